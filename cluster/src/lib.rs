//! Hush cluster bus (issue 4). A single node uses the in-process routing of `hush-actors`;
//! the Redis-backed bus that links nodes lands here.
#![warn(missing_docs)]
