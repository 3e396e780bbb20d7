from formal.cli import entry

entry()
