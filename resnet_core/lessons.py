"""Placeholder until the lessons land (issue 7): name -> Lesson."""
LESSONS: dict = {}
