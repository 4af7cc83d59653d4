"""DynaLay model core: fixed-point layers, backbones, the agent and the checkpoint format."""
