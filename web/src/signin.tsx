// Sign-in: with an OpenID provider (Pro Santé Connect) or, under `telehealth up`, the development
// sign-in of a demo member. From an enrolled browser (its client certificate, main port) the
// session is bound to that certificate (`this_device`); from a browser without one (sign-in
// port) the sign-in enrols it with a PKCS#12 bundle to import.

import { useEffect, useState } from "preact/hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import { client, startSession, type Identity } from "./api";
import { AuthService, type CompleteSignInResponse, type SignInResult } from "./gen/telehealth/v1/auth_pb";
import { ROLE_NAMES } from "./format";
import { ErrorMessage, Loading, Page, useLoad } from "./ui";
import { navigate } from "./router";

/** The demo members of `telehealth up` (README), offered by the development sign-in. */
const DEMO_MEMBERS = [
  ["10000000017", "Dr Martin — médecin du centre"],
  ["10000000025", "Claire — infirmière à domicile"],
  ["10000000058", "Dr Durand — dermatologue du CHU"],
  ["10000000066", "Dr Leroy — spécialiste des plaies du CHU"],
  ["10000000033", "Administratrice du centre"],
  ["10000000074", "Administrateur du CHU"],
  ["10000000041", "Secrétaire coordinatrice"],
] as const;

const PENDING_KEY = "telehealth.pending-sign-in";

type Enrolment = "this_device" | "pkcs12";

export function SignIn() {
  const providers = useLoad(() => client(AuthService).listProviders({}), []);
  const [result, setResult] = useState<{ result: SignInResult; enrolment: Enrolment }>();
  const [bundle, setBundle] = useState<CompleteSignInResponse>();
  const [error, setError] = useState<unknown>();
  const [needsEnrolment, setNeedsEnrolment] = useState(false);
  const [busy, setBusy] = useState(false);

  async function development(rpps: string, enrolment: Enrolment) {
    setBusy(true);
    setError(undefined);
    try {
      const answer = await client(AuthService).developmentSignIn({
        rppsNumber: rpps,
        thisDevice: enrolment === "this_device",
        pkcs12: enrolment === "pkcs12",
      });
      setResult({ result: answer, enrolment });
    } catch (caught) {
      // No enrolled certificate (the sign-in port): the same sign-in enrols this browser.
      if (enrolment === "this_device" && ConnectError.from(caught).code === Code.FailedPrecondition) {
        setNeedsEnrolment(true);
        return development(rpps, "pkcs12");
      }
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  async function provider(id: string, enrolment: Enrolment) {
    setBusy(true);
    setError(undefined);
    try {
      const answer = await client(AuthService).startSignIn({
        provider: id,
        thisDevice: enrolment === "this_device",
        pkcs12: enrolment === "pkcs12",
      });
      // What the return page needs to finish (no secret: the state and PKCE verifier stay on the server).
      sessionStorage.setItem(PENDING_KEY, JSON.stringify({ provider: id, enrolment }));
      location.assign(answer.authorizationUrl);
    } catch (caught) {
      if (enrolment === "this_device" && ConnectError.from(caught).code === Code.FailedPrecondition) {
        setNeedsEnrolment(true);
        return provider(id, "pkcs12");
      }
      setError(caught);
      setBusy(false);
    }
  }

  if (bundle) return <BundleReady bundle={bundle} />;
  if (result) return <ChooseOrganisation {...result} onBundle={setBundle} />;

  const list = providers.data?.providers ?? [];
  const dev = list.find((p) => p.development);
  const enrolment: Enrolment = needsEnrolment ? "pkcs12" : "this_device";
  return (
    <Page title="Connexion">
      <p>Connectez-vous avec votre identité de professionnel de santé.</p>
      {needsEnrolment && (
        <p class="notice" role="status">
          Ce navigateur n’a pas encore de certificat d’appareil. La connexion va l’enrôler : vous
          recevrez un fichier à importer, puis vous ouvrirez l’adresse principale du service.
        </p>
      )}
      {providers.loading && <Loading />}
      <ErrorMessage error={providers.error ?? error} />
      <div class="providers">
        {list
          .filter((p) => !p.development)
          .map((p) => (
            <button type="button" class="primary" disabled={busy} onClick={() => provider(p.id, enrolment)}>
              Se connecter avec {p.displayName}
            </button>
          ))}
      </div>
      {dev && <DevelopmentForm busy={busy} onSubmit={(rpps) => development(rpps, enrolment)} />}
    </Page>
  );
}

function DevelopmentForm({ busy, onSubmit }: { busy: boolean; onSubmit: (rpps: string) => void }) {
  const [rpps, setRpps] = useState<string>(DEMO_MEMBERS[0][0]);
  return (
    <form
      class="card"
      onSubmit={(event) => {
        event.preventDefault();
        onSubmit(rpps);
      }}
    >
      <h2>Connexion de développement</h2>
      <p class="hint">Disponible seulement avec <code>telehealth up</code> : un membre de démonstration, sans fournisseur d’identité.</p>
      <label for="demo-member">Membre de démonstration</label>
      <select id="demo-member" value={rpps} onChange={(e) => setRpps((e.target as HTMLSelectElement).value)}>
        {DEMO_MEMBERS.map(([number, label]) => (
          <option value={number}>
            {label} (RPPS {number})
          </option>
        ))}
      </select>
      <button type="submit" class="primary" disabled={busy}>
        Se connecter
      </button>
    </form>
  );
}

/** The person was verified: pick the organisation (if several), then the session starts. */
function ChooseOrganisation({
  result,
  enrolment,
  onBundle,
}: {
  result: SignInResult;
  enrolment: Enrolment;
  onBundle: (bundle: CompleteSignInResponse) => void;
}) {
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function complete(orgId: string) {
    setBusy(true);
    setError(undefined);
    try {
      const answer = await client(AuthService).completeSignIn({
        ticket: result.ticket,
        orgId,
        deviceName: deviceName(),
      });
      if (enrolment === "pkcs12") {
        onBundle(answer);
        return;
      }
      const membership = result.memberships.find((m) => m.orgId === orgId)!;
      const identity: Identity = {
        subject: subjectOf(answer.tokens!.accessToken),
        orgId,
        roles: membership.roles,
        givenName: result.givenName,
        familyName: result.familyName,
        specialty: membership.specialty,
      };
      startSession(answer.tokens!, identity);
      // Back to the address that asked for a sign-in (a reload, a shared link), else home.
      const back = location.pathname.startsWith("/connexion") ? "/" : location.pathname + location.search;
      navigate(back, true);
    } catch (caught) {
      setError(caught);
      setBusy(false);
    }
  }

  useEffect(() => {
    if (result.memberships.length === 1) void complete(result.memberships[0]!.orgId);
    // Once, on arrival: a single organisation needs no choice.
  }, []);

  return (
    <Page title="Choisir l’organisation">
      <p>
        Bonjour {result.givenName} {result.familyName}. Pour quelle organisation travaillez-vous maintenant ?
      </p>
      <ErrorMessage error={error} />
      <ul class="choices">
        {result.memberships.map((m) => (
          <li>
            <button type="button" disabled={busy} onClick={() => complete(m.orgId)}>
              {m.orgId} — {m.roles.map((r) => ROLE_NAMES[r]).join(", ")}
              {m.specialty && ` (${m.specialty})`}
            </button>
          </li>
        ))}
      </ul>
    </Page>
  );
}

/** The enrolment bundle: downloaded once, its password shown once. */
function BundleReady({ bundle }: { bundle: CompleteSignInResponse }) {
  const [url] = useState(() =>
    URL.createObjectURL(new Blob([bundle.pkcs12 as BlobPart], { type: "application/x-pkcs12" })),
  );
  return (
    <Page title="Certificat de cet appareil">
      <ol class="steps">
        <li>
          <a href={url} download="telesante-appareil.p12" class="button primary">
            Télécharger le certificat (.p12)
          </a>
        </li>
        <li>
          Notez le mot de passe, affiché une seule fois : <strong class="secret">{bundle.pkcs12Password}</strong>
        </li>
        <li>Importez le fichier dans le navigateur (Paramètres → Sécurité → Gérer les certificats).</li>
        <li>Ouvrez l’adresse principale du service et reconnectez-vous depuis cet appareil.</li>
      </ol>
    </Page>
  );
}

/** Back from the provider: `/connexion/retour?code=…&state=…`. */
export function SignInReturn() {
  const [outcome, setOutcome] = useState<{ result: SignInResult; enrolment: Enrolment }>();
  const [bundle, setBundle] = useState<CompleteSignInResponse>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const params = new URLSearchParams(location.search);
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? "null") as
      | { provider: string; enrolment: Enrolment }
      | null;
    sessionStorage.removeItem(PENDING_KEY);
    const providerError = params.get("error");
    if (providerError) {
      setError(new ConnectError(`le fournisseur a refusé : ${providerError}`, Code.Unauthenticated));
      return;
    }
    if (!pending) {
      setError(new ConnectError("aucune connexion en cours dans cet onglet", Code.FailedPrecondition));
      return;
    }
    client(AuthService)
      .finishSignIn({ provider: pending.provider, state: params.get("state") ?? "", code: params.get("code") ?? "" })
      .then((result) => setOutcome({ result, enrolment: pending.enrolment }), setError);
  }, []);
  if (bundle) return <BundleReady bundle={bundle} />;
  if (outcome) return <ChooseOrganisation {...outcome} onBundle={setBundle} />;
  return (
    <Page title="Connexion">
      {error ? (
        <>
          <ErrorMessage error={error} />
          <p>
            <a href="/connexion">Recommencer la connexion</a>
          </p>
        </>
      ) : (
        <Loading label="Vérification de votre identité…" />
      )}
    </Page>
  );
}

function deviceName(): string {
  const mobile = /Mobi|Android/i.test(navigator.userAgent);
  return mobile ? "Navigateur mobile" : "Navigateur de poste de travail";
}

/** The `sub` of an access token (its payload is plain base64url JSON; it is not verified here). */
function subjectOf(token: string): string {
  const payload = token.split(".")[1] ?? "";
  const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
  return (JSON.parse(json) as { sub?: string }).sub ?? "";
}
