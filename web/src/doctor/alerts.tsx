// Wound alerts for the doctor: open ones, live (`WatchAlerts`), each acknowledged with a comment.

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client } from "../api";
import { AlertStatus, WoundService, type Alert } from "../gen/telehealth/v1/wound_pb";
import { ALERT_CAUSE, formatDateTime, formatNumber } from "../format";
import { displayName, usePatients } from "../patients";
import { useLiveWatch } from "../live";
import { ErrorMessage, Loading, Page } from "../ui";

export function Alerts() {
  const [alerts, setAlerts] = useState<Alert[]>();
  const [error, setError] = useState<unknown>();

  const reload = () =>
    client(WoundService)
      .listAlerts({ statuses: [AlertStatus.OPEN], pageSize: 200 })
      .then((answer) => setAlerts(answer.alerts), setError);
  useEffect(() => {
    reload();
  }, []);
  // Alerts raised or acknowledged elsewhere; after a watch ends, the open alerts are loaded again
  // once the next one is ready.
  const live = useLiveWatch(
    async (signal, ready) => {
      for await (const message of client(WoundService).watchAlerts({}, { signal })) {
        if (message.payload.case === "ready") ready();
        if (message.payload.case !== "event") continue;
        const alert = message.payload.value.alert;
        if (!alert) continue;
        setAlerts((list) => {
          const others = (list ?? []).filter((a) => a.alertId !== alert.alertId);
          return alert.status === AlertStatus.OPEN ? [alert, ...others] : others;
        });
      }
    },
    reload,
    [],
  );

  const patients = usePatients((alerts ?? []).map((a) => a.patient?.pseudonym ?? "").filter(Boolean));
  const sorted = [...(alerts ?? [])].sort((a, b) => timestampMs(b.raisedAt!) - timestampMs(a.raisedAt!));
  return (
    <Page title="Alertes plaies">
      <p>
        <span class={live ? "live on" : "live"} role="status">
          {live ? "● mise à jour en direct" : "○ connexion au direct…"}
        </span>
      </p>
      <ErrorMessage error={error} />
      {!alerts ? (
        <Loading />
      ) : sorted.length === 0 ? (
        <p>Aucune alerte ouverte.</p>
      ) : (
        <ul class="alerts">
          {sorted.map((alert) => (
            <AlertItem
              alert={alert}
              patient={displayName(patients.get(alert.patient?.pseudonym ?? ""))}
              onDone={() => setAlerts((list) => list?.filter((a) => a.alertId !== alert.alertId))}
            />
          ))}
        </ul>
      )}
    </Page>
  );
}

function AlertItem({ alert, patient, onDone }: { alert: Alert; patient: string; onDone: () => void }) {
  const [comment, setComment] = useState("");
  const [error, setError] = useState<unknown>();
  const id = `ack-${alert.alertId}`;
  return (
    <li class="card alert">
      <h2>
        {ALERT_CAUSE[alert.cause]} — <a href={`/medecin/patient/${encodeURIComponent(alert.patient?.pseudonym ?? "")}`}>{patient}</a>
      </h2>
      <p>
        Levée le {formatDateTime(alert.raisedAt)}
        {alert.previousValue !== undefined && alert.currentValue !== undefined &&
          ` · ${formatNumber(alert.previousValue, 2)} → ${formatNumber(alert.currentValue, 2)}`}
      </p>
      {alert.summary && <p>{alert.summary}</p>}
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          try {
            await client(WoundService).acknowledgeAlert({ alertId: alert.alertId, comment });
            onDone();
          } catch (caught) {
            setError(caught);
          }
        }}
      >
        <label for={id}>Commentaire (conduite à tenir)</label>
        <input id={id} value={comment} onInput={(e) => setComment((e.target as HTMLInputElement).value)} />
        <button type="submit">Prendre connaissance</button>
      </form>
      <ErrorMessage error={error} />
    </li>
  );
}
