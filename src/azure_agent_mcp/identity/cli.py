"""Placeholder until this area's commands land."""


def register(subparsers) -> None:
    return None
