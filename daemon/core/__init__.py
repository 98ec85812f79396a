"""The engine and the state machines it carries out (promises, tasks, schedules)."""
