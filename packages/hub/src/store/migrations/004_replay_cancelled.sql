-- A replay can be cancelled (DELETE /api/v1/replays/{id}): a fifth status.
ALTER TABLE replays DROP CONSTRAINT replays_status_check;
ALTER TABLE replays ADD CONSTRAINT replays_status_check CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled'));
