// What waits on the phone to be sent, with the progress of every photo.

import { useEffect, useState } from "preact/hooks";
import { discard, listQueued, onOutboxChange, sendAll, type QueuedAssessment } from "./outbox-store";
import { formatDateTime } from "../format";
import { Page, Progress } from "../ui";

export function Outbox() {
  const [items, setItems] = useState<QueuedAssessment[]>();
  const [online, setOnline] = useState(navigator.onLine);
  useEffect(() => {
    const refresh = () => void listQueued().then(setItems);
    refresh();
    const stop = onOutboxChange(refresh);
    const connectivity = () => setOnline(navigator.onLine);
    window.addEventListener("online", connectivity);
    window.addEventListener("offline", connectivity);
    void sendAll();
    return () => {
      stop();
      window.removeEventListener("online", connectivity);
      window.removeEventListener("offline", connectivity);
    };
  }, []);

  const sorted = [...(items ?? [])].sort((a, b) => b.assessedAt.localeCompare(a.assessedAt));
  return (
    <Page title="Envois">
      <p role="status" class={online ? "online" : "offline"}>
        {online ? "Réseau disponible." : "Pas de réseau : les envois reprendront automatiquement."}
      </p>
      {sorted.length === 0 && <p class="hint">Rien à envoyer.</p>}
      <ul class="outbox">
        {sorted.map((item) => (
          <li class={`card outbox-item ${item.state}`} data-state={item.state}>
            <h2>{item.label}</h2>
            <p>
              Évaluation du {formatDateTime(new Date(item.assessedAt))} —{" "}
              <strong>
                {item.state === "done"
                  ? "envoyée"
                  : item.state === "failed"
                    ? "refusée"
                    : item.state === "sending"
                      ? "envoi en cours"
                      : "en attente"}
              </strong>
              {item.state === "done" && item.alerts ? ` · ${item.alerts} alerte(s) transmise(s) au médecin` : ""}
            </p>
            {item.message && <p class="hint">{item.message}</p>}
            {item.received && (
              <details>
                <summary>{item.received.length} photo(s) reçue(s) par le serveur, empreintes SHA-256</summary>
                <ul class="hashes">
                  {item.received.map((hash) => (
                    <li>
                      <code>{hash}</code>
                    </li>
                  ))}
                </ul>
              </details>
            )}
            <ul class="photos">
              {item.photos.map((photo, index) => (
                <li>
                  Photo {index + 1} ({Math.round(photo.size / 1024)} Ko)
                  <Progress value={photo.sent} max={photo.size} label={`Envoi de la photo ${index + 1}`} />
                </li>
              ))}
            </ul>
            {(item.state === "done" || item.state === "failed") && (
              <button type="button" onClick={() => void discard(item.id)}>
                Retirer de la liste
              </button>
            )}
          </li>
        ))}
      </ul>
    </Page>
  );
}
