"""The Redis side: the vote path's pipelined client, the redis-py client of everything else,
the Lua scripts' loader, every key name, and the durability barrier."""
