"""Mail out and in: who gets what (recipients), the forms, rendering, the outbox and its transports, and the
mailbox intake with its receipts."""
