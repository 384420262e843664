"""PyBullet tabletop scenes, tasks and the simulator env."""
