"""Fault tests (issue 7): killed runs, bad configuration and data, numerical and environment
faults, full disks, hostile checkpoints and determinism."""
