"""The daemon process: the HTTP API, push streams, the scheduler, the server lifecycle, the supervisor.

Everything here runs on one asyncio event loop that owns the engine (the supervisor's threads manage
worker processes and never touch the engine).
"""
