-- Issue 24 §1: a campaign names its selection year (评选年度, 2026 for "2026年江苏最美工匠"),
-- which the id and the title only implied. Without one it is the year its vote opens in, in
-- its own time zone, as the API gives it (models.opening_year): so for the campaigns stored
-- before, and for a row written without it (a worker of the release before, still running
-- while the next one migrates). The opening is bounded first (a window stored before times
-- were checked may lie at the calendar's ends, or be infinite), a zone PostgreSQL does not
-- know is read as Beijing time, and the result is kept to the years the API accepts.
CREATE FUNCTION campaign_opening_year(opens_at timestamptz, zone text) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    bounded timestamptz := LEAST(GREATEST(opens_at, '1900-01-01 00:00+00'),
                                 '2200-01-01 00:00+00');
    wall timestamp;
BEGIN
    BEGIN
        wall := bounded AT TIME ZONE zone;
    EXCEPTION WHEN invalid_parameter_value THEN
        wall := bounded AT TIME ZONE 'Asia/Shanghai';
    END;
    RETURN LEAST(2100, GREATEST(2000, EXTRACT(YEAR FROM wall)::integer));
END $$;

CREATE FUNCTION campaigns_default_year() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.year IS NULL THEN
        NEW.year := campaign_opening_year(NEW.opens_at, NEW.timezone);
    END IF;
    RETURN NEW;
END $$;

ALTER TABLE campaigns ADD COLUMN year integer;
UPDATE campaigns SET year = campaign_opening_year(opens_at, timezone);
ALTER TABLE campaigns
    ALTER COLUMN year SET NOT NULL,
    ADD CONSTRAINT campaigns_year CHECK (year BETWEEN 2000 AND 2100);
CREATE TRIGGER campaigns_default_year BEFORE INSERT ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_default_year();
