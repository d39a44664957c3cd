-- The submitter queues the next slice of run ARGV[1]'s roots (push_roots); the reaper steps in
-- if no slice comes for SUBMIT_STALL_SECONDS. Returns the roots still to queue.
return push_roots(SUBMIT_STALL_SECONDS)
