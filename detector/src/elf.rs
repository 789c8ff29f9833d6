//! Library analysis: SHA-256, interposed credential APIs, constructors (issue 4).
