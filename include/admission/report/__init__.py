"""What people read about a day: the daily report for the ministry, the campaign page's data and the console
summary. Read from the store and the snapshot, never the folder."""
