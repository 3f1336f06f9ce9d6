"""The trace store: schema, migrations, the write path (recorder) and the snapshot reader."""
