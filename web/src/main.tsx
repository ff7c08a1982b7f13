import { render } from "preact";
import "./styles.css";
import { App } from "./app";

const root = document.getElementById("app")!;
root.textContent = ""; // the "Chargement…" shown until the script runs
render(<App />, root);
