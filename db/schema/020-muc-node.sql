-- 020-muc-node.sql - schema version 20: group chat occupants in a
-- cluster of nodes (issue 15; docs/DESIGN.md "Cluster").
--
-- An occupant row is written by the room's owner, which may be another
-- node than the one holding the occupant's session.  Rows say which node
-- holds the session (`node`; '' without a cluster) and that node's run
-- (`boot`, taken from muc_node_runs; 0 while that node has not
-- registered its run yet: such a row is judged by the session table
-- only), so that a node starting again
-- removes only the occupants of its own earlier runs: the rows of the
-- other nodes' sessions, alive, stay.  Occupants of a node that left the
-- cluster are removed by their room's new owner (their sessions are no
-- longer in its session table), and the others see them leave.
--   muc_node_runs          each node's current run, registered by its
--                          worker 0 at start;
--   muc_occupants_node     (node): the start-up clean-up and the rooms
--                          with occupants of nodes that left.

ALTER TABLE muc_occupants ADD COLUMN node text NOT NULL DEFAULT '';
CREATE INDEX muc_occupants_node ON muc_occupants (node);

CREATE TABLE muc_node_runs (
	node text PRIMARY KEY,          -- cluster.node ('' without a cluster)
	boot bigint NOT NULL            -- its master's run (muc_boot)
);

INSERT INTO schema_version (version) VALUES (20);
