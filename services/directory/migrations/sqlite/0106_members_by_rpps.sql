-- Sign-in finds a professional's memberships in every organisation by RPPS number.
CREATE INDEX members_by_rpps ON members (rpps);
