"""What the day reads: the data folder's files under limits, the parse cache, the reader, the row rules with
their Data Docs, the mail submissions, and the snapshot that holds them all for the rest of the day."""
