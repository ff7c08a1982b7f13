-- The 7-day answer deadline of the TE2 act applies to every request, urgent or not: urgency gives
-- a shorter due date, never an exemption (the report used to exempt urgent requests). The rule's
-- value and validity are unchanged, so it stays the same row; only its stored description, which
-- said "non urgentes", is corrected. Nothing else stored depends on it: due dates follow the
-- urgency and target delays as before, and acts are judged each time a report is read.
UPDATE billing_conditions
   SET source = 'Réponse sous 7 jours à toute demande, urgente ou non'
 WHERE rule_id = 'TE2-DEADLINE-2022-04';
