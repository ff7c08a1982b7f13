// A new wound assessment at the patient's home: measurements with the PUSH score computed as the
// nurse types, photos from the phone's camera, all kept on the phone (outbox) before sending.
// Below it, a request for a specialist's opinion on the wound.

import { useState } from "preact/hooks";
import { client } from "../api";
import {
  ExudateAmount,
  InfectionSign,
  TissueType,
  WoundService,
} from "../gen/telehealth/v1/wound_pb";
import { ExpertiseService, Urgency } from "../gen/telehealth/v1/expertise_pb";
import { AETIOLOGY, EXUDATE, TISSUE, formatBodySite, pushScore } from "../format";
import { displayName, usePatients } from "../patients";
import { sha256Hex } from "../images";
import { navigate } from "../router";
import { enqueue } from "./outbox-store";
import { ErrorMessage, Loading, Page, newId, useLoad } from "../ui";

const SIGNS: [InfectionSign, string][] = [
  [InfectionSign.SPREADING_ERYTHEMA, "Rougeur qui s’étend"],
  [InfectionSign.WARMTH, "Chaleur"],
  [InfectionSign.SWELLING, "Œdème"],
  [InfectionSign.INCREASED_PAIN, "Douleur accrue"],
  [InfectionSign.PURULENT_DISCHARGE, "Écoulement purulent"],
  [InfectionSign.MALODOUR, "Mauvaise odeur"],
  [InfectionSign.FEVER, "Fièvre"],
];

function parseCm(value: string): number {
  return Number(value.replace(",", "."));
}

export function NewAssessment({ wound: woundId }: { wound: string }) {
  const wound = useLoad(() => client(WoundService).getWound({ woundId }), [woundId]);
  const w = wound.data?.wound;
  const patients = usePatients(w?.patient?.pseudonym ? [w.patient.pseudonym] : []);
  const [length, setLength] = useState("");
  const [width, setWidth] = useState("");
  const [depth, setDepth] = useState("");
  const [tissue, setTissue] = useState<TissueType>(TissueType.UNSPECIFIED);
  const [exudate, setExudate] = useState<ExudateAmount>(ExudateAmount.UNSPECIFIED);
  const [pain, setPain] = useState("");
  const [signs, setSigns] = useState<InfectionSign[]>([]);
  const [notes, setNotes] = useState("");
  const [photos, setPhotos] = useState<File[]>([]);
  const [error, setError] = useState<unknown>();
  const [saving, setSaving] = useState(false);

  const score = pushScore(parseCm(length), parseCm(width), tissue, exudate);
  const label = w
    ? `${displayName(patients.get(w.patient?.pseudonym ?? ""))} — ${AETIOLOGY[w.description?.aetiology ?? 0]}`
    : "";

  async function submit(event: Event) {
    event.preventDefault();
    setSaving(true);
    try {
      await enqueue({
        id: newId(),
        woundId,
        bodySite: {
          region: w!.description?.bodySite?.region ?? 0,
          laterality: w!.description?.bodySite?.laterality ?? 0,
          description: w!.description?.bodySite?.description ?? "",
          snomedCtCode: w!.description?.bodySite?.snomedCtCode ?? "",
        },
        label,
        assessedAt: new Date().toISOString(),
        lengthCm: parseCm(length),
        widthCm: parseCm(width),
        depthCm: depth ? parseCm(depth) : undefined,
        tissue,
        exudate,
        painScore: pain ? Number(pain) : undefined,
        infectionSigns: signs,
        notes,
        photos: await Promise.all(
          photos.map(async (file) => ({
            sessionId: newId(),
            name: file.name,
            file,
            sha256: await sha256Hex(file),
            size: file.size,
            sent: 0,
          })),
        ),
        state: "waiting",
      });
      navigate("/infirmiere/envois");
    } catch (caught) {
      setError(caught);
      setSaving(false);
    }
  }

  if (wound.error) return <Page title="Nouvelle évaluation"><ErrorMessage error={wound.error} /></Page>;
  if (!w) return <Loading />;
  return (
    <Page title="Nouvelle évaluation">
      <p class="subtitle">
        {label} · {formatBodySite(w.description?.bodySite)}
      </p>
      <form class="assessment" onSubmit={submit}>
        <fieldset>
          <legend>Mesures (cm)</legend>
          <div class="row">
            <div>
              <label for="length">Longueur</label>
              <input id="length" inputMode="decimal" required value={length} onInput={(e) => setLength((e.target as HTMLInputElement).value)} />
            </div>
            <div>
              <label for="width">Largeur</label>
              <input id="width" inputMode="decimal" required value={width} onInput={(e) => setWidth((e.target as HTMLInputElement).value)} />
            </div>
            <div>
              <label for="depth">Profondeur</label>
              <input id="depth" inputMode="decimal" value={depth} onInput={(e) => setDepth((e.target as HTMLInputElement).value)} />
            </div>
          </div>
        </fieldset>
        <label for="tissue">Type de tissu</label>
        <select id="tissue" required value={tissue} onChange={(e) => setTissue(Number((e.target as HTMLSelectElement).value))}>
          <option value="0">Choisir…</option>
          {[TissueType.CLOSED, TissueType.EPITHELIAL, TissueType.GRANULATION, TissueType.SLOUGH, TissueType.NECROTIC].map((t) => (
            <option value={t}>{TISSUE[t]}</option>
          ))}
        </select>
        <label for="exudate">Exsudat</label>
        <select id="exudate" required value={exudate} onChange={(e) => setExudate(Number((e.target as HTMLSelectElement).value))}>
          <option value="0">Choisir…</option>
          {[ExudateAmount.NONE, ExudateAmount.LIGHT, ExudateAmount.MODERATE, ExudateAmount.HEAVY].map((x) => (
            <option value={x}>{EXUDATE[x]}</option>
          ))}
        </select>
        <p class="push-score" aria-live="polite">
          Score PUSH : <output>{score ?? "—"}</output> / 17
        </p>
        <label for="pain">Douleur (0 à 10)</label>
        <input id="pain" type="number" min="0" max="10" value={pain} onInput={(e) => setPain((e.target as HTMLInputElement).value)} />
        <fieldset>
          <legend>Signes d’infection</legend>
          {SIGNS.map(([sign, text]) => (
            <label class="check">
              <input
                type="checkbox"
                checked={signs.includes(sign)}
                onChange={(e) =>
                  setSigns((list) => ((e.target as HTMLInputElement).checked ? [...list, sign] : list.filter((s) => s !== sign)))
                }
              />{" "}
              {text}
            </label>
          ))}
        </fieldset>
        <label for="notes">Observations</label>
        <textarea id="notes" maxLength={2000} value={notes} onInput={(e) => setNotes((e.target as HTMLTextAreaElement).value)} />
        <label for="photos">Photos de la plaie</label>
        <input
          id="photos"
          type="file"
          accept="image/jpeg,image/png"
          capture="environment"
          multiple
          onChange={(e) => setPhotos([...((e.target as HTMLInputElement).files ?? [])])}
        />
        {photos.length > 0 && <p class="hint">{photos.length} photo(s) prête(s).</p>}
        <ErrorMessage error={error} />
        <button type="submit" class="primary" disabled={saving}>
          Enregistrer l’évaluation
        </button>
        <p class="hint">L’évaluation est gardée sur ce téléphone et envoyée dès que le réseau le permet.</p>
      </form>
      <ExpertiseForm woundId={woundId} lastAssessmentId={w.lastAssessmentId} />
    </Page>
  );
}

/** Asks a hospital's wound specialists for an opinion, with the last assessment's photos. */
function ExpertiseForm({ woundId, lastAssessmentId }: { woundId: string; lastAssessmentId: string }) {
  const targets = useLoad(() => client(ExpertiseService).listTargets({ specialty: "wound_care" }), []);
  const [question, setQuestion] = useState("");
  const [urgent, setUrgent] = useState(false);
  const [sent, setSent] = useState(false);
  const [error, setError] = useState<unknown>();
  const target = targets.data?.targets[0];

  async function submit(event: Event) {
    event.preventDefault();
    setError(undefined);
    try {
      const photoIds = lastAssessmentId
        ? ((await client(WoundService).getAssessment({ assessmentId: lastAssessmentId })).assessment?.photos ?? []).map(
            (p) => p.imageId,
          )
        : [];
      await client(WoundService).requestWoundExpertise({
        idempotencyKey: newId(),
        woundId,
        targetOrgId: target!.orgId,
        specialty: target!.specialty,
        clinicalQuestion: question,
        urgency: urgent ? Urgency.URGENT : Urgency.ROUTINE,
        photoIds,
      });
      setSent(true);
    } catch (caught) {
      setError(caught);
    }
  }

  return (
    <form class="card" onSubmit={submit}>
      <h2>Demander un avis spécialisé</h2>
      {sent ? (
        <p role="status">Demande envoyée à {target?.orgDisplayName}.</p>
      ) : !target ? (
        <p class="hint">{targets.loading ? "Recherche des équipes partenaires…" : "Aucune équipe partenaire pour les plaies."}</p>
      ) : (
        <>
          <p>Destinataire : {target.orgDisplayName} ({target.specialtyDisplayName})</p>
          <label for="question">Question posée</label>
          <textarea id="question" required maxLength={2000} value={question} onInput={(e) => setQuestion((e.target as HTMLTextAreaElement).value)} />
          <label class="check">
            <input type="checkbox" checked={urgent} onChange={(e) => setUrgent((e.target as HTMLInputElement).checked)} /> Urgent
          </label>
          <button type="submit">Envoyer la demande</button>
        </>
      )}
      <ErrorMessage error={error ?? targets.error} />
    </form>
  );
}
