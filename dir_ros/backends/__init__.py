"""The two backends side by side: the DIR network (dir.py) and the landmark fit (landmarks/)."""
