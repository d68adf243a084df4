"""Operations: tiered storage (custlens.ops.archive), backup/restore (custlens.ops.backup), engine export."""
