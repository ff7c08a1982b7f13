// The shell: who is signed in, the navigation of their role, and the screen of the address.
// Each role's screens are their own bundle, loaded when first opened.

import type { ComponentType } from "preact";
import { useEffect, useState } from "preact/hooks";
import { currentIdentity, onSessionChange, signOut, type Identity } from "./api";
import { Role } from "./gen/telehealth/v1/access_pb";
import { ROLE_NAMES } from "./format";
import { match, navigate, onLink, usePath } from "./router";
import { SignIn, SignInReturn } from "./signin";
import { ErrorMessage, Loading } from "./ui";

interface Route {
  pattern: string;
  // Each screen takes the route's parameters as props.
  load: () => Promise<ComponentType<any>>;
}

const ROUTES: Route[] = [
  { pattern: "/medecin", load: () => import("./doctor/agenda").then((m) => m.Agenda) },
  { pattern: "/medecin/patients", load: () => import("./doctor/patients").then((m) => m.PatientSearch) },
  { pattern: "/medecin/patient/:id", load: () => import("./doctor/patient").then((m) => m.PatientFile) },
  { pattern: "/medecin/alertes", load: () => import("./doctor/alerts").then((m) => m.Alerts) },
  { pattern: "/medecin/consultation/:appointment", load: () => import("./video/consultation").then((m) => m.Consultation) },
  { pattern: "/infirmiere", load: () => import("./nurse/round").then((m) => m.Round) },
  { pattern: "/infirmiere/plaie/:wound", load: () => import("./nurse/assessment").then((m) => m.NewAssessment) },
  { pattern: "/infirmiere/envois", load: () => import("./nurse/outbox").then((m) => m.Outbox) },
  { pattern: "/infirmiere/consultation/:appointment", load: () => import("./video/consultation").then((m) => m.Consultation) },
  { pattern: "/specialiste", load: () => import("./specialist/inbox").then((m) => m.Inbox) },
  { pattern: "/specialiste/demande/:request", load: () => import("./specialist/request").then((m) => m.RequestView) },
  { pattern: "/specialiste/activite", load: () => import("./specialist/activity").then((m) => m.Activity) },
  { pattern: "/admin", load: () => import("./admin/admin").then((m) => m.Admin) },
];

const NAVIGATION: Partial<Record<Role, [string, string][]>> = {
  [Role.DOCTOR]: [
    ["/medecin", "Agenda"],
    ["/medecin/patients", "Patients"],
    ["/medecin/alertes", "Alertes plaies"],
  ],
  [Role.NURSE]: [
    ["/infirmiere", "Tournée du jour"],
    ["/infirmiere/envois", "Envois"],
  ],
  [Role.SPECIALIST]: [
    ["/specialiste", "Demandes reçues"],
    ["/specialiste/activite", "Activité"],
  ],
  [Role.ADMIN]: [["/admin", "Administration"]],
};

const HOME: [Role, string][] = [
  [Role.DOCTOR, "/medecin"],
  [Role.NURSE, "/infirmiere"],
  [Role.SPECIALIST, "/specialiste"],
  [Role.ADMIN, "/admin"],
];

export function App() {
  const path = usePath();
  const [identity, setIdentity] = useState<Identity | undefined>(currentIdentity());
  useEffect(() => onSessionChange(() => setIdentity(currentIdentity())), []);

  if (path === "/connexion/retour") return <Shell>{<SignInReturn />}</Shell>;
  if (!identity) return <Shell>{<SignIn />}</Shell>;

  const home = HOME.find(([role]) => identity.roles.includes(role))?.[1];
  if (path === "/" || path === "/connexion") {
    if (home) queueMicrotask(() => navigate(home, true));
    return (
      <Shell identity={identity}>
        {home ? <Loading /> : <p>Aucun écran n’est prévu pour votre rôle dans ce client.</p>}
      </Shell>
    );
  }
  for (const route of ROUTES) {
    const params = match(route.pattern, path);
    if (!params) continue;
    // A screen of another role is not linked from the menu, but it is not hidden either: opened
    // by its address, its calls are refused by the gateway, and the refusal is what shows.
    return (
      <Shell identity={identity}>
        <Lazy key={route.pattern} load={route.load} params={params} />
      </Shell>
    );
  }
  return (
    <Shell identity={identity}>
      <p>Page introuvable. <a href={home ?? "/"}>Retour à l’accueil</a></p>
    </Shell>
  );
}

function Lazy({ load, params }: { load: Route["load"]; params: Record<string, string> }) {
  const [screen, setScreen] = useState<{ component?: ComponentType<Record<string, string>>; error?: unknown }>({});
  useEffect(() => {
    load().then((component) => setScreen({ component }), (error) => setScreen({ error }));
  }, [load]);
  if (screen.error) return <ErrorMessage error={screen.error} />;
  if (!screen.component) return <Loading />;
  const Screen = screen.component;
  return <Screen {...params} />;
}

function Shell({ identity, children }: { identity?: Identity; children: preact.ComponentChildren }) {
  const links = identity ? identity.roles.flatMap((role) => NAVIGATION[role] ?? []) : [];
  return (
    <div class="shell" onClick={onLink}>
      <a class="skip" href="#contenu">
        Aller au contenu
      </a>
      <header class="top">
        <span class="brand">Télésanté</span>
        {identity && (
          <nav aria-label="Navigation principale">
            {links.map(([href, label]) => (
              <a href={href} aria-current={location.pathname === href ? "page" : undefined}>
                {label}
              </a>
            ))}
          </nav>
        )}
        {identity && (
          <div class="who">
            <span>
              {`${identity.givenName} ${identity.familyName}`.trim() || identity.subject} · {identity.roles.map((r) => ROLE_NAMES[r]).join(", ")} ·{" "}
              {identity.orgId}
            </span>
            <button type="button" onClick={() => void signOut().then(() => navigate("/connexion", true))}>
              Se déconnecter
            </button>
          </div>
        )}
      </header>
      <main id="contenu">{children}</main>
    </div>
  );
}
