-- The console's audit trail (#13) filters by actor, action and entity type, newest first, a
-- page at a time: each filter gets an index ending in `id`, like `audit_events_entity_idx`,
-- so a page is a backwards range of one index (a date range is a range of the UUID v7 ids).
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, id);
CREATE INDEX audit_events_action_idx ON audit_events (action, id);
CREATE INDEX audit_events_entity_type_idx ON audit_events (entity_type, id);
