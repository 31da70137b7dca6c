from contender.cli.main import app

app()
