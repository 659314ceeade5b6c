"""Architecture search: FBNet DNAS and compound-scaling search."""
