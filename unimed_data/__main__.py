from unimed_data.cli import app

app()
