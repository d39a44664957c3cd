-- Queue the next slice of run ARGV[1]'s roots (push_roots). Returns the roots still to queue.
return push_roots()
