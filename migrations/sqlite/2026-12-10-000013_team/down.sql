DROP TABLE team_sessions;
DROP TABLE team_sign_in_links;
DROP TABLE team_members;
