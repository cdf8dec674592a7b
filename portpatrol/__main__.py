from portpatrol.cli import run

run()
