"""The one driver of worker processes: a budget of them, each driven by a thread of its owner's
process, giving turns to the tasks bound to it (``scheduler.py``: ``Scheduler`` and its ``Host``\\ s;
``task.py``: what takes turns; ``room.py``: each process's memory). The dashboard's server and the
command line drive their workers through it alike. Torch-free; nothing here calls Streamlit.
"""
