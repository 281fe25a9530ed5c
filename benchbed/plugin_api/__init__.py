"""What plugins build on: the component base classes, the kinds, the hooks and the
registry that loads plugins."""
