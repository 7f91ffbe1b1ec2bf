"""The network: backbone -> fpn -> head, plus the parameter-free points and input transform."""
