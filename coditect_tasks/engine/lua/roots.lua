-- The submitter queues the next slice of run ARGV[1]'s roots (push_roots), or the process that
-- completed a node the next slice of its successors, ARGV[3] at a time (ROOT_SLICE without); the
-- reaper steps in if no slice comes for SUBMIT_STALL_SECONDS. Returns the nodes still to queue.
return push_roots(SUBMIT_STALL_SECONDS, tonumber(ARGV[3] or ''))
