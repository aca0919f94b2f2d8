-- Team members (#13): the clinic's people who sign in to the console, by e-mailed one-time
-- link, into a session with an idle timeout and an absolute lifetime. Only SHA-256 hashes of
-- links and session tokens are stored. API keys stay for systems.

CREATE TABLE team_members (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    -- trimmed and lower-cased by the service; the CHECK makes the unique key case-insensitive
    -- even for a row written by hand
    email TEXT NOT NULL UNIQUE CHECK (email = lower(email)),
    role TEXT NOT NULL CHECK (role IN ('admin', 'staff', 'finance')),
    status TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    deactivated_at TIMESTAMP
);
CREATE INDEX team_members_role_idx ON team_members (status, role);

CREATE TABLE team_sign_in_links (
    id TEXT PRIMARY KEY NOT NULL,
    member_id TEXT NOT NULL REFERENCES team_members (id),
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX team_sign_in_links_member_idx ON team_sign_in_links (member_id, created_at);

CREATE TABLE team_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    member_id TEXT NOT NULL REFERENCES team_members (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    -- the idle timeout counts from here (stamped at most once a minute)
    last_seen_at TIMESTAMP NOT NULL,
    -- the absolute lifetime: created_at + console.session_max_hours
    expires_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP,
    end_reason TEXT CHECK (end_reason IN ('signed_out', 'signed_out_everywhere', 'role_changed', 'deactivated'))
);
CREATE INDEX team_sessions_member_idx ON team_sessions (member_id, ended_at);
