"""Entry scripts bound into Aframe containers."""
