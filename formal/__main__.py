from formal.cli.main import entry

entry()
