"""The loop's steps and what runs them: the CLI's steps, the demo, the loop shown, Airflow, background servers, progress."""
