"""Pure functions that decide what a change means and who gets what of it: normalize,
authority (一数一源), projection, masking, snapshots."""
