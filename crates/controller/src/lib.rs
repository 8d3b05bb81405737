//! The controller: intent writer, REST API with auth and policy, compile loop, southbound.
