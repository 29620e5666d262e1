"""Folium with every asset served by the app itself (no CDN), and the map's layer names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import folium

from map_ui.settings import MapSettings

V = "/static/vendor"
LOCAL_JS = [
    ("leaflet", f"{V}/leaflet/leaflet.js"),
    ("jquery", f"{V}/jquery/jquery.min.js"),
    ("bootstrap", f"{V}/bootstrap/bootstrap.bundle.min.js"),
    ("awesome_markers", f"{V}/awesome-markers/leaflet.awesome-markers.js"),
]
LOCAL_CSS = [
    ("leaflet_css", f"{V}/leaflet/leaflet.css"),
    ("bootstrap_css", f"{V}/bootstrap/bootstrap.min.css"),
    ("awesome_markers_font_css", f"{V}/fontawesome/css/all.min.css"),
    ("awesome_markers_css", f"{V}/awesome-markers/leaflet.awesome-markers.css"),
]


class LocalMap(folium.Map):
    """``folium.Map`` whose default JS/CSS point at the vendored copies."""

    default_js = LOCAL_JS
    default_css = LOCAL_CSS


@dataclass(frozen=True)
class MapParts:
    header: str
    html: str
    script: str
    names: dict[str, str]  # layer -> JavaScript variable name


def build_map(settings: MapSettings, patients: list[dict[str, Any]]) -> MapParts:
    """The dispatcher map: base layer (tiles or none), patients at home, empty live layers."""
    m = LocalMap(location=[settings.center_lat, settings.center_lon], zoom_start=settings.zoom, tiles=None,
                 control_scale=True, prefer_canvas=False, zoom_control=True)
    url = settings.tile_url()
    if url:
        folium.TileLayer(url, attr=settings.tiles_attribution, name="Streets", max_zoom=19).add_to(m)
    groups = {}
    for key, label in (("patients", "Patients at home"), ("links", "Unit → patient"), ("units", "Units"),
                       ("alerts", "Alerts")):
        groups[key] = folium.FeatureGroup(name=label, show=True).add_to(m)
    for p in patients:
        if p.get("home_lat") is None or p.get("home_lon") is None:
            continue
        folium.CircleMarker(
            [p["home_lat"], p["home_lon"]], radius=3, color="#5b6b7f", weight=1, fill=True, fill_opacity=0.55,
            tooltip=f"patient {p.get('patient_id', '')}",
        ).add_to(groups["patients"])
    folium.LayerControl(collapsed=True, position="topright").add_to(m)
    fig = m.get_root()
    fig.render()
    names = {k: g.get_name() for k, g in groups.items()}
    names["map"] = m.get_name()
    return MapParts(fig.header.render(), fig.html.render(), fig.script.render(), names)
