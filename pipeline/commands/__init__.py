"""The work behind the commands that are not shot renders: still projection (`vfx project`) and
attribute directions (`vfx direction learn`). Plain functions over files and folders, free of Prefect;
`cli.py` calls them."""
