// One request for the specialist: the clinical context, the images (viewer with zoom and pan,
// two side by side to compare), the messages with the requester, and the structured answer.

import { useEffect, useRef, useState } from "preact/hooks";
import { client } from "../api";
import {
  ExpertiseService,
  ExpertiseStatus,
  PacsTransferStatus,
  Recommendation,
  type ExpertiseMessage,
  type ExpertiseRequest,
} from "../gen/telehealth/v1/expertise_pb";
import type { ImageInfo } from "../gen/telehealth/v1/images_pb";
import {
  EXPERTISE_STATUS,
  RECOMMENDATION,
  URGENCY,
  formatBodySite,
  formatDateTime,
  formatNumber,
} from "../format";
import { Thumbnail, downloadExpertiseImage } from "../images";
import { ErrorMessage, Loading, Page, newId, useLoad } from "../ui";

export function RequestView({ request: requestId }: { request: string }) {
  const loaded = useLoad(() => client(ExpertiseService).getRequest({ requestId }), [requestId]);
  const [request, setRequest] = useState<ExpertiseRequest>();
  const [compared, setCompared] = useState<ImageInfo[]>([]);
  useEffect(() => setRequest(loaded.data?.request), [loaded.data]);

  if (loaded.error) return <Page title="Demande"><ErrorMessage error={loaded.error} /></Page>;
  if (!request) return <Loading />;
  const content = request.content!;
  const patient = content.patient;
  const images = [...request.images].sort((a, b) =>
    (a.capturedAt?.seconds ?? a.uploadedAt?.seconds ?? 0n) < (b.capturedAt?.seconds ?? b.uploadedAt?.seconds ?? 0n) ? -1 : 1,
  );

  function toggle(image: ImageInfo) {
    setCompared((list) =>
      list.some((i) => i.imageId === image.imageId)
        ? list.filter((i) => i.imageId !== image.imageId)
        : [...list, image].slice(-2),
    );
  }

  return (
    <Page title={`Demande de télé-expertise — ${content.specialty}`}>
      <section class="card">
        <p>
          <span class="badge">{EXPERTISE_STATUS[request.status]}</span> · {URGENCY[content.urgency]} · échéance{" "}
          {formatDateTime(request.dueAt)}
          {request.overdue && <strong class="badge alert"> en retard</strong>}
        </p>
        <dl class="facts">
          <dt>Patient</dt>
          <dd>
            {patient?.ageYears} ans · {patient?.sex === 1 ? "homme" : patient?.sex === 2 ? "femme" : "—"}
          </dd>
          <dt>Question</dt>
          <dd>{content.clinicalQuestion}</dd>
          {content.context && (
            <>
              <dt>Localisation</dt>
              <dd>{formatBodySite(content.context.bodySite)}</dd>
              <dt>Antécédents</dt>
              <dd>{content.context.medicalHistory || "—"}</dd>
              <dt>Depuis</dt>
              <dd>{content.context.lesionDuration || "—"}</dd>
            </>
          )}
          {content.wound && (
            <>
              <dt>Plaie</dt>
              <dd>
                {content.wound.aetiology} — {content.wound.bodySite}
                <ul>
                  {content.wound.history.map((h) => (
                    <li>
                      {formatDateTime(h.assessedAt)} : {formatNumber(h.areaCm2, 2)} cm², PUSH {h.pushScore}
                    </li>
                  ))}
                </ul>
              </dd>
            </>
          )}
        </dl>
      </section>
      <section class="card" aria-labelledby="images-title">
        <h2 id="images-title">Images ({images.length})</h2>
        <p class="hint">Choisissez une image pour l’agrandir, deux pour les comparer côte à côte.</p>
        <div class="thumbs">
          {images.map((image) => (
            <div class={compared.some((i) => i.imageId === image.imageId) ? "thumb-pick picked" : "thumb-pick"}>
              <Thumbnail requestId={request.requestId} image={image} onOpen={() => toggle(image)} />
              <span class="hint">{formatDateTime(image.capturedAt ?? image.uploadedAt)}</span>
            </div>
          ))}
        </div>
        {compared.length > 0 && (
          <div class={compared.length === 2 ? "viewers compare" : "viewers"}>
            {compared.map((image) => (
              <Viewer requestId={request.requestId} image={image} />
            ))}
          </div>
        )}
      </section>
      <Messages requestId={request.requestId} />
      {request.status === ExpertiseStatus.CLAIMED ? (
        <AnswerForm request={request} onAnswered={setRequest} />
      ) : request.answer ? (
        <section class="card">
          <h2>Réponse envoyée le {formatDateTime(request.answeredAt)}</h2>
          <p>
            <strong>{RECOMMENDATION[request.answer.recommendation]}</strong> — {request.answer.impression}
          </p>
          <PacsTransfers request={request} />
        </section>
      ) : null}
    </Page>
  );
}

const TRANSFER_STATUS: Record<PacsTransferStatus, string> = {
  [PacsTransferStatus.UNSPECIFIED]: "—",
  [PacsTransferStatus.PENDING]: "en attente d'envoi",
  [PacsTransferStatus.RETRYING]: "nouvel essai prévu",
  [PacsTransferStatus.STORED]: "classée",
  [PacsTransferStatus.FAILED]: "échec",
};

/** Where the filing of the images in the hospital's PACS stands (when one is configured). */
function PacsTransfers({ request }: { request: ExpertiseRequest }) {
  if (request.pacsTransfers.length === 0) return null;
  return (
    <div class="deliveries">
      <h3>Classement des images dans le PACS</h3>
      <ul>
        {request.pacsTransfers.map((t, index) => (
          <li>
            Image {index + 1} → {t.destination} : <strong>{TRANSFER_STATUS[t.status]}</strong>
            {t.storedAt && ` le ${formatDateTime(t.storedAt)}`}
            {t.lastError && t.status !== PacsTransferStatus.STORED && <span class="hint"> — {t.lastError}</span>}
          </li>
        ))}
      </ul>
    </div>
  );
}

/** One image at full resolution, zoomed with the wheel or buttons and panned by dragging or arrows. */
function Viewer({ requestId, image }: { requestId: string; image: ImageInfo }) {
  const [url, setUrl] = useState<string>();
  const [error, setError] = useState<unknown>();
  const [zoom, setZoom] = useState(1);
  const [pan, setPan] = useState({ x: 0, y: 0 });
  const drag = useRef<{ x: number; y: number } | undefined>(undefined);
  useEffect(() => {
    let made: string | undefined;
    downloadExpertiseImage(requestId, image.imageId).then((blob) => {
      made = URL.createObjectURL(blob);
      setUrl(made);
    }, setError);
    return () => made && URL.revokeObjectURL(made);
  }, [requestId, image.imageId]);
  const clampZoom = (z: number) => Math.min(8, Math.max(1, z));
  return (
    <figure class="viewer">
      <div
        class="viewport"
        tabIndex={0}
        aria-label="Image : molette ou + et − pour zoomer, flèches pour déplacer"
        onWheel={(e) => {
          e.preventDefault();
          setZoom((z) => clampZoom(z * (e.deltaY < 0 ? 1.2 : 1 / 1.2)));
        }}
        onPointerDown={(e) => {
          drag.current = { x: e.clientX - pan.x, y: e.clientY - pan.y };
          (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
        }}
        onPointerMove={(e) => drag.current && setPan({ x: e.clientX - drag.current.x, y: e.clientY - drag.current.y })}
        onPointerUp={() => (drag.current = undefined)}
        onKeyDown={(e) => {
          const moves: Record<string, [number, number]> = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
          if (e.key === "+") setZoom((z) => clampZoom(z * 1.2));
          else if (e.key === "-") setZoom((z) => clampZoom(z / 1.2));
          else if (moves[e.key]) {
            e.preventDefault();
            setPan((p) => ({ x: p.x + moves[e.key]![0], y: p.y + moves[e.key]![1] }));
          }
        }}
      >
        {url ? (
          <img
            src={url}
            alt={`Image du ${formatDateTime(image.capturedAt ?? image.uploadedAt)} en pleine résolution`}
            draggable={false}
            style={{ transform: `translate(${pan.x}px, ${pan.y}px) scale(${zoom})` }}
          />
        ) : (
          <Loading label="Téléchargement de l’image…" />
        )}
      </div>
      <figcaption>
        {formatDateTime(image.capturedAt ?? image.uploadedAt)} · {image.widthPx} × {image.heightPx} px ·{" "}
        <button type="button" onClick={() => setZoom((z) => clampZoom(z * 1.5))}>
          Zoom +
        </button>{" "}
        <button type="button" onClick={() => setZoom((z) => clampZoom(z / 1.5))}>
          Zoom −
        </button>{" "}
        <button type="button" onClick={() => (setZoom(1), setPan({ x: 0, y: 0 }))}>
          Réinitialiser
        </button>
      </figcaption>
      <ErrorMessage error={error} />
    </figure>
  );
}

function Messages({ requestId }: { requestId: string }) {
  const [messages, setMessages] = useState<ExpertiseMessage[]>([]);
  const [text, setText] = useState("");
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    client(ExpertiseService)
      .listMessages({ requestId, pageSize: 100 })
      .then((answer) => setMessages(answer.messages), setError);
  }, [requestId]);
  return (
    <section class="card" aria-labelledby="messages-title">
      <h2 id="messages-title">Messages</h2>
      <ol class="messages">
        {messages.map((m) => (
          <li>
            <span class="hint">
              {m.author?.subject}, {formatDateTime(m.postedAt)} :
            </span>{" "}
            {m.text}
          </li>
        ))}
      </ol>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          try {
            const answer = await client(ExpertiseService).postMessage({ requestId, idempotencyKey: newId(), text });
            setMessages((list) => [...list, answer.message!]);
            setText("");
          } catch (caught) {
            setError(caught);
          }
        }}
      >
        <label for="message">Message au demandeur</label>
        <textarea id="message" required maxLength={4000} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
        <button type="submit">Envoyer</button>
      </form>
      <ErrorMessage error={error} />
    </section>
  );
}

function AnswerForm({ request, onAnswered }: { request: ExpertiseRequest; onAnswered: (r: ExpertiseRequest) => void }) {
  const [impression, setImpression] = useState("");
  const [recommendation, setRecommendation] = useState<Recommendation>(Recommendation.UNSPECIFIED);
  const [months, setMonths] = useState("");
  const [details, setDetails] = useState("");
  const [error, setError] = useState<unknown>();
  return (
    <form
      class="card answer-form"
      onSubmit={async (event) => {
        event.preventDefault();
        try {
          const answer = await client(ExpertiseService).answerRequest({
            requestId: request.requestId,
            answer: {
              impression,
              recommendation,
              monitorIntervalMonths: recommendation === Recommendation.MONITOR ? Number(months) : 0,
              recommendationDetails: details,
            },
          });
          onAnswered(answer.request!);
        } catch (caught) {
          setError(caught);
        }
      }}
    >
      <h2>Réponse</h2>
      <label for="impression">Impression diagnostique</label>
      <textarea id="impression" required maxLength={4000} value={impression} onInput={(e) => setImpression((e.target as HTMLTextAreaElement).value)} />
      <label for="recommendation">Conduite à tenir</label>
      <select
        id="recommendation"
        required
        value={recommendation}
        onChange={(e) => setRecommendation(Number((e.target as HTMLSelectElement).value))}
      >
        <option value="">Choisir…</option>
        {Object.entries(RECOMMENDATION)
          .filter(([value]) => value !== "0")
          .map(([value, label]) => (
            <option value={value}>{label}</option>
          ))}
      </select>
      {recommendation === Recommendation.MONITOR && (
        <>
          <label for="months">Revoir dans (mois)</label>
          <input id="months" type="number" min="1" max="60" required value={months} onInput={(e) => setMonths((e.target as HTMLInputElement).value)} />
        </>
      )}
      <label for="details">Précisions</label>
      <textarea id="details" maxLength={4000} value={details} onInput={(e) => setDetails((e.target as HTMLTextAreaElement).value)} />
      <ErrorMessage error={error} />
      <button type="submit" class="primary">
        Envoyer la réponse
      </button>
    </form>
  );
}
