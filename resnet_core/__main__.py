from resnet_core.cli import main
from resnet_core.remote.transport import exit_now

# Once main has returned, its files are closed and its workers ended: output flushed, the process
# ends without the interpreter's teardown (with torch loaded, a noticeable part of a short run).
exit_now(main())
