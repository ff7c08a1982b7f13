// The patient's file for a doctor: identity with its status, consents, appointments, wounds with
// their healing chart, and tele-expertise requests with their answers.

import { client } from "../api";
import { PatientService, ConsentAct, ConsentDecision, type Patient } from "../gen/telehealth/v1/patients_pb";
import { SchedulingService } from "../gen/telehealth/v1/scheduling_pb";
import { WoundService, WoundStatus, type Wound } from "../gen/telehealth/v1/wound_pb";
import {
  ExpertiseService,
  ExpertiseStatus,
  ReportDeliveryStatus,
  ReportRecipient,
  type ExpertiseRequest,
} from "../gen/telehealth/v1/expertise_pb";
import {
  AETIOLOGY,
  APPOINTMENT_STATUS,
  EXPERTISE_STATUS,
  HEALING_TREND,
  IDENTITY_STATUS,
  RECOMMENDATION,
  formatBirthDate,
  formatBodySite,
  formatDateTime,
  formatNumber,
} from "../format";
import { HealingChart } from "../chart";
import { displayName } from "../patients";
import { Thumbnail } from "../images";
import { ErrorMessage, Loading, Page, useLoad } from "../ui";

const ACT: Record<ConsentAct, string> = {
  [ConsentAct.UNSPECIFIED]: "—",
  [ConsentAct.TELECONSULTATION]: "Téléconsultation",
  [ConsentAct.TELE_EXPERTISE]: "Télé-expertise",
  [ConsentAct.WOUND_MONITORING]: "Télésurveillance des plaies",
  [ConsentAct.SHARING]: "Partage avec l’équipe de soins",
};

export function PatientFile({ id }: { id: string }) {
  const file = useLoad(async () => {
    const [patient, consents, appointments, wounds, requests] = await Promise.all([
      client(PatientService).getPatient({ patientId: id }),
      client(PatientService).listConsents({ patientId: id }),
      client(SchedulingService).listAppointments({ patient: { pseudonym: id }, pageSize: 100 }),
      client(WoundService).listDoctorWounds({ patient: { pseudonym: id }, wholeOrg: true, pageSize: 50 }),
      client(ExpertiseService).listMyRequests({ patient: { pseudonym: id }, wholeOrg: true, pageSize: 50 }),
    ]);
    return {
      patient: patient.patient!,
      consents: consents.consents,
      appointments: appointments.appointments,
      wounds: wounds.wounds.map((w) => w.wound!).filter(Boolean),
      requests: requests.requests,
    };
  }, [id]);

  if (file.error) return <Page title="Dossier patient"><ErrorMessage error={file.error} /></Page>;
  if (!file.data) return <Loading />;
  const { patient, consents, appointments, wounds, requests } = file.data;
  return (
    <Page title={`Dossier de ${displayName(patient)}`}>
      <Identity patient={patient} />
      <section class="card" aria-labelledby="consents">
        <h2 id="consents">Consentements</h2>
        <ul>
          {consents.map((c) => (
            <li>
              {ACT[c.act]} {c.targetOrgId && `(${c.targetOrgId})`} :{" "}
              <strong>{c.withdrawnTime ? "retiré" : c.decision === ConsentDecision.GIVEN ? "donné" : "refusé"}</strong>{" "}
              le {formatDateTime(c.recordedTime)}
            </li>
          ))}
          {consents.length === 0 && <li class="hint">Aucun consentement recueilli.</li>}
        </ul>
      </section>
      <section class="card" aria-labelledby="appointments">
        <h2 id="appointments">Rendez-vous</h2>
        <ul>
          {appointments.map((a) => (
            <li>
              {formatDateTime(a.time?.startTime)} — {APPOINTMENT_STATUS[a.status]} {a.reason && `— ${a.reason}`}
            </li>
          ))}
          {appointments.length === 0 && <li class="hint">Aucun rendez-vous.</li>}
        </ul>
      </section>
      <section aria-labelledby="wounds">
        <h2 id="wounds">Plaies</h2>
        {wounds.map((w) => (
          <WoundCard wound={w} />
        ))}
        {wounds.length === 0 && <p class="hint">Aucune plaie suivie.</p>}
      </section>
      <section aria-labelledby="requests">
        <h2 id="requests">Demandes de télé-expertise</h2>
        {requests.map((r) => (
          <RequestCard request={r} />
        ))}
        {requests.length === 0 && <p class="hint">Aucune demande.</p>}
      </section>
    </Page>
  );
}

function Identity({ patient }: { patient: Patient }) {
  const identity = patient.identity!;
  return (
    <section class="card" aria-labelledby="identity">
      <h2 id="identity">Identité</h2>
      <dl class="facts">
        <dt>Nom de naissance</dt>
        <dd>{identity.birthName}</dd>
        {identity.usedName && (
          <>
            <dt>Nom utilisé</dt>
            <dd>{identity.usedName}</dd>
          </>
        )}
        <dt>Prénoms</dt>
        <dd>{identity.firstNames}</dd>
        <dt>Date de naissance</dt>
        <dd>{formatBirthDate(identity.birthDate)}</dd>
        <dt>Statut de l’identité</dt>
        <dd>
          <span class={`badge identity-${patient.identityStatus}`}>{IDENTITY_STATUS[patient.identityStatus]}</span>
        </dd>
        {patient.ins?.number && (
          <>
            <dt>INS</dt>
            <dd>
              {patient.ins.number}
              {patient.ins.test && " (INS de test)"}
            </dd>
          </>
        )}
        {patient.address && (
          <>
            <dt>Adresse</dt>
            <dd>
              {[...patient.address.lines, `${patient.address.postalCode} ${patient.address.city}`].join(", ")}
            </dd>
          </>
        )}
      </dl>
    </section>
  );
}

function WoundCard({ wound }: { wound: Wound }) {
  const trend = useLoad(() => client(WoundService).getWoundTrend({ woundId: wound.woundId }), [wound.woundId]);
  const t = trend.data?.trend;
  const title = `${AETIOLOGY[wound.description?.aetiology ?? 0]} — ${formatBodySite(wound.description?.bodySite)}`;
  return (
    <article class="card wound">
      <h3>
        {title} {wound.status === WoundStatus.CLOSED && <span class="badge">fermée</span>}
        {wound.openAlertCount > 0 && <span class="badge alert">{wound.openAlertCount} alerte(s)</span>}
      </h3>
      <ErrorMessage error={trend.error} />
      {t && (
        <>
          <p>
            Évolution : <strong>{HEALING_TREND[t.healingTrend]}</strong>
            {t.percentAreaReductionFromBaseline !== undefined &&
              ` · réduction depuis la première mesure : ${formatNumber(t.percentAreaReductionFromBaseline)} %`}
          </p>
          <HealingChart points={t.points} title={`Surface et score PUSH de la plaie : ${title}`} />
        </>
      )}
    </article>
  );
}

function RequestCard({ request }: { request: ExpertiseRequest }) {
  const answer = request.answer;
  return (
    <article class="card request">
      <h3>
        {request.content?.specialty} → {request.content?.targetOrgId}{" "}
        <span class="badge">{EXPERTISE_STATUS[request.status]}</span>
      </h3>
      <p>{request.content?.clinicalQuestion || <span class="hint">Question à rédiger</span>}</p>
      <div class="thumbs">
        {request.images.map((image) => (
          <Thumbnail requestId={request.requestId} image={image} />
        ))}
      </div>
      {answer && (
        <div class="answer">
          <h4>Réponse du {formatDateTime(request.answeredAt)}</h4>
          <p>
            <strong>{RECOMMENDATION[answer.recommendation]}</strong> — {answer.impression}
          </p>
          {answer.recommendationDetails && <p>{answer.recommendationDetails}</p>}
          {answer.freeText && <p>{answer.freeText}</p>}
          {(request.status === ExpertiseStatus.ANSWERED || request.status === ExpertiseStatus.CLOSED) && (
            <ReportDeliveries requestId={request.requestId} />
          )}
        </div>
      )}
    </article>
  );
}

const RECIPIENT: Record<ReportRecipient, string> = {
  [ReportRecipient.UNSPECIFIED]: "—",
  [ReportRecipient.REQUESTER]: "Demandeur",
  [ReportRecipient.GENERAL_PRACTITIONER]: "Médecin traitant",
};

const DELIVERY_STATUS: Record<ReportDeliveryStatus, string> = {
  [ReportDeliveryStatus.UNSPECIFIED]: "—",
  [ReportDeliveryStatus.PENDING]: "en attente d'envoi",
  [ReportDeliveryStatus.RETRYING]: "nouvel essai prévu",
  [ReportDeliveryStatus.DELIVERED]: "remis",
  [ReportDeliveryStatus.FAILED]: "échec",
};

// Where the answer report's secure mails stand (GetRequest holds them, lists do not).
function ReportDeliveries({ requestId }: { requestId: string }) {
  const found = useLoad(() => client(ExpertiseService).getRequest({ requestId }), [requestId]);
  const deliveries = found.data?.request?.reportDeliveries ?? [];
  if (deliveries.length === 0) return null;
  return (
    <div class="deliveries">
      <h4>Envoi du compte rendu par messagerie sécurisée</h4>
      <ul>
        {deliveries.map((d) => (
          <li>
            {RECIPIENT[d.recipient]} ({d.address}) : <strong>{DELIVERY_STATUS[d.status]}</strong>
            {d.deliveredAt && ` le ${formatDateTime(d.deliveredAt)}`}
            {d.status === ReportDeliveryStatus.RETRYING && d.nextAttemptAt && ` (prochain essai ${formatDateTime(d.nextAttemptAt)})`}
            {d.lastError && d.status !== ReportDeliveryStatus.DELIVERED && <span class="hint"> — {d.lastError}</span>}
          </li>
        ))}
      </ul>
    </div>
  );
}
