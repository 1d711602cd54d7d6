//! cutover: blue-green upgrades of an application together with its MongoDB data.
