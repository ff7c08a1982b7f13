// The specialist's inbox: requests addressed to the hospital, live (`WatchRequests`), overdue
// first then by due time; claiming one opens it.

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, currentIdentity } from "../api";
import { ExpertiseService, ExpertiseStatus, Urgency, type ExpertiseRequest } from "../gen/telehealth/v1/expertise_pb";
import { EXPERTISE_STATUS, URGENCY, formatDateTime } from "../format";
import { navigate } from "../router";
import { useLiveWatch } from "../live";
import { ErrorMessage, Loading, Page } from "../ui";

const OPEN = [ExpertiseStatus.SUBMITTED, ExpertiseStatus.CLAIMED];

function order(a: ExpertiseRequest, b: ExpertiseRequest): number {
  if (a.overdue !== b.overdue) return a.overdue ? -1 : 1;
  return (a.dueAt ? timestampMs(a.dueAt) : Infinity) - (b.dueAt ? timestampMs(b.dueAt) : Infinity);
}

export function Inbox() {
  const me = currentIdentity()!;
  const [requests, setRequests] = useState<ExpertiseRequest[]>();
  const [error, setError] = useState<unknown>();

  const reload = () =>
    client(ExpertiseService)
      .listInbox({ statuses: OPEN, pageSize: 200 })
      .then((answer) => setRequests(answer.requests), setError);
  useEffect(() => {
    reload();
  }, []);
  // Requests arriving or changing; after a watch ends, the inbox is loaded again once the next
  // one is ready.
  const live = useLiveWatch(
    async (signal, ready) => {
      for await (const message of client(ExpertiseService).watchRequests({ wholeOrg: true }, { signal })) {
        if (message.payload.case === "ready") ready();
        if (message.payload.case !== "event") continue;
        const changed = message.payload.value.request;
        if (!changed) continue;
        setRequests((list) => {
          const others = (list ?? []).filter((r) => r.requestId !== changed.requestId);
          return OPEN.includes(changed.status) ? [...others, changed] : others;
        });
      }
    },
    reload,
    [],
  );

  async function claim(request: ExpertiseRequest) {
    try {
      await client(ExpertiseService).claimRequest({ requestId: request.requestId });
      navigate(`/specialiste/demande/${encodeURIComponent(request.requestId)}`);
    } catch (caught) {
      setError(caught);
    }
  }

  const sorted = [...(requests ?? [])].sort(order);
  return (
    <Page title="Demandes reçues">
      <p>
        <span class={live ? "live on" : "live"} role="status">
          {live ? "● mise à jour en direct" : "○ connexion au direct…"}
        </span>
      </p>
      <ErrorMessage error={error} />
      {!requests ? (
        <Loading />
      ) : sorted.length === 0 ? (
        <p>Aucune demande en attente.</p>
      ) : (
        <table class="list inbox">
          <caption>{sorted.length} demande(s) ouverte(s)</caption>
          <thead>
            <tr>
              <th scope="col">Échéance</th>
              <th scope="col">Spécialité</th>
              <th scope="col">Question</th>
              <th scope="col">Urgence</th>
              <th scope="col">État</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((r) => (
              <tr class={r.overdue ? "overdue" : ""} data-request={r.requestId}>
                <td>
                  {formatDateTime(r.dueAt)}
                  {r.overdue && <strong class="badge alert"> en retard</strong>}
                </td>
                <td>{r.content?.specialty}</td>
                <td>{r.content?.clinicalQuestion}</td>
                <td>{r.content?.urgency === Urgency.URGENT ? <strong>{URGENCY[Urgency.URGENT]}</strong> : URGENCY[r.content?.urgency ?? 0]}</td>
                <td>{EXPERTISE_STATUS[r.status]}</td>
                <td>
                  {r.status === ExpertiseStatus.SUBMITTED ? (
                    <button type="button" class="primary" onClick={() => void claim(r)}>
                      Prendre en charge
                    </button>
                  ) : r.claimedBy?.subject === me.subject ? (
                    <a href={`/specialiste/demande/${encodeURIComponent(r.requestId)}`}>Ouvrir</a>
                  ) : (
                    <span class="hint">prise par un confrère</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
