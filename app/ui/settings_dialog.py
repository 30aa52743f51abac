"""Settings as pages: Engine (where the model runs: settings_engine.py; performance; saved states:
settings_saved_states.py), Models (each model's chat template: settings_models.py), Modes (per-mode sampling and
system prompts), Appearance, Other apps (settings_serve.py). Stored through core settings."""

from __future__ import annotations

import copy

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QScrollArea,
    QSpinBox,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.limits import max_threads
from app.core.llm.bindings import gpu_offload_supported
from app.core.llm.load_options import physical_cores
from app.core.modes import Mode, preset_for
from app.core.settings import THEMES, Settings
from app.ui.settings_engine import EngineSection
from app.ui.settings_models import ModelTemplatesSection
from app.ui.settings_saved_states import SavedStatesSection
from app.ui.settings_serve import ServeSection

CONTEXT_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]


class ModeEditor(QWidget):
    def __init__(
        self,
        mode: Mode,
        overrides: dict[str, object],
        parent: QWidget | None = None,
        *,
        model_id: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.mode = mode
        self.model_id = model_id  # the loaded model's catalog id: its own preset is what the person sees
        self._kept = dict(overrides)
        preset = preset_for(mode, overrides, model_id=model_id)
        form = QFormLayout(self)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(preset.sampling.temperature)
        self.temperature.setAccessibleName(f"{mode.label} temperature")
        self.temperature.setToolTip("0 always picks the most likely word; higher values vary more.")
        form.addRow("Temperature", self.temperature)
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.05, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(preset.sampling.top_p)
        self.top_p.setAccessibleName(f"{mode.label} top-p")
        form.addRow("Top-p", self.top_p)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(16, 32768)
        self.max_tokens.setValue(preset.sampling.max_tokens)
        self.max_tokens.setAccessibleName(f"{mode.label} maximum reply length")
        form.addRow("Longest reply (tokens)", self.max_tokens)
        self.system_prompt = QPlainTextEdit(preset.system_prompt)
        self.system_prompt.setAccessibleName(f"{mode.label} system prompt")
        form.addRow("System prompt", self.system_prompt)
        self._shown = self._values()

    def restore_preset(self) -> None:
        """Show the preset (the loaded model's own, if it has one) and forget every earlier change."""
        preset = preset_for(self.mode, model_id=self.model_id)
        self._kept = {}
        self.temperature.setValue(preset.sampling.temperature)
        self.top_p.setValue(preset.sampling.top_p)
        self.max_tokens.setValue(preset.sampling.max_tokens)
        self.system_prompt.setPlainText(preset.system_prompt)

    def _values(self) -> dict[str, object]:
        return {
            "temperature": round(self.temperature.value(), 3),
            "top_p": round(self.top_p.value(), 3),
            "max_tokens": self.max_tokens.value(),
            "system_prompt": self.system_prompt.toPlainText().strip(),
        }

    def overrides(self) -> dict[str, object]:
        """Only what differs from the preset, so later preset improvements still reach the user. A value not
        edited here keeps its earlier change as it was: the preset shown may be the loaded model's own (the
        starter's), and a change made for other models must not vanish because it matches this one."""
        preset = preset_for(self.mode, model_id=self.model_id)
        base: dict[str, object] = {
            "temperature": round(preset.sampling.temperature, 3),
            "top_p": round(preset.sampling.top_p, 3),
            "max_tokens": preset.sampling.max_tokens,
            "system_prompt": preset.system_prompt,
        }
        changed = dict(self._kept)
        for key, value in self._values().items():
            if value == self._shown[key]:
                continue
            if value == base[key] or value == "":
                changed.pop(key, None)
            else:
                changed[key] = value
        return changed


PAGES = ("Engine", "Models", "Modes", "Appearance", "Other apps")
DEFAULT_SIZE = (780, 600)  # fits a 1366x768 laptop screen with room for the task bar


def _page(*parts: QWidget, fill: QWidget | None = None) -> QScrollArea:
    """A page of sections, top-aligned (or with ``fill`` taking the height left); it scrolls only when the
    window is made smaller than its contents."""
    content = QWidget()
    layout = QVBoxLayout(content)
    layout.setContentsMargins(0, 0, 0, 0)
    for part in parts:
        layout.addWidget(part, 1 if part is fill else 0)
    if fill is None:
        layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(content)
    return scroll


class SettingsDialog(QDialog):
    """Settings as pages, a list of them on the left (as GPT4All, LM Studio and Jan do): Engine, Models, Modes,
    Appearance, Other apps. Nothing is stored until OK; ``result_settings`` is what the pages show."""

    last_page = 0  # the page shown last while the app runs, shown first the next time

    def __init__(
        self,
        settings: Settings,
        parent: QWidget | None = None,
        *,
        model_id: str | None = None,
        loaded_model: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumSize(640, 420)
        self._original = settings
        outer = QVBoxLayout(self)
        body = QHBoxLayout()
        outer.addLayout(body, 1)
        self.page_list = QListWidget()
        self.page_list.setAccessibleName("Settings pages")
        self.page_list.addItems(list(PAGES))
        self.page_list.setSpacing(3)
        self.page_list.setFixedWidth(
            max(self.page_list.fontMetrics().horizontalAdvance(page) for page in PAGES) + 40
        )
        body.addWidget(self.page_list)
        self.pages = QStackedWidget()
        body.addWidget(self.pages, 1)

        performance = QGroupBox("Performance")
        form = QFormLayout(performance)
        self.threads = QSpinBox()
        self.threads.setRange(0, max_threads())  # the range settings.load accepts
        self.threads.setSpecialValueText(f"Automatic ({physical_cores()} physical cores)")
        self.threads.setValue(settings.threads)
        self.threads.setAccessibleName("CPU threads")
        form.addRow("CPU threads", self.threads)
        self.context_size = QComboBox()
        self.context_size.setAccessibleName("Context size")
        for size in CONTEXT_SIZES:
            self.context_size.addItem(f"{size:,} tokens", size)
        index = self.context_size.findData(settings.context_size)
        if index < 0:
            self.context_size.addItem(f"{settings.context_size:,} tokens", settings.context_size)
            index = self.context_size.count() - 1
        self.context_size.setCurrentIndex(index)
        form.addRow("Context size", self.context_size)
        context_note = QLabel("A larger context remembers more of the conversation but needs more memory.")
        context_note.setWordWrap(True)
        form.addRow(context_note)
        self.gpu_layers: QSpinBox | None = None
        if gpu_offload_supported():
            self.gpu_layers = QSpinBox()
            self.gpu_layers.setRange(-1, 999)
            self.gpu_layers.setSpecialValueText("All layers")
            self.gpu_layers.setValue(settings.gpu_layers)
            self.gpu_layers.setAccessibleName("Layers on the GPU")
            form.addRow("Layers on the GPU", self.gpu_layers)
        self.engine_section = EngineSection(settings)  # this computer or a server
        self.saved_states_section = SavedStatesSection(settings)  # saved states: space, Clear
        self.pages.addWidget(_page(performance, self.engine_section, self.saved_states_section))

        self.templates_section = ModelTemplatesSection(settings, loaded_model)
        # The templates table fills the page: it scrolls its own rows, the page does not.
        self.pages.addWidget(_page(self.templates_section, fill=self.templates_section))

        self.mode_tabs = QTabWidget()
        self.mode_editors: dict[Mode, ModeEditor] = {}
        for mode in Mode:
            editor = ModeEditor(mode, settings.mode_overrides.get(mode.value, {}), model_id=model_id)
            self.mode_editors[mode] = editor
            self.mode_tabs.addTab(editor, mode.label)
        modes_note = QLabel(
            "How each mode answers: how varied its words are, how long a reply may grow, and the instructions "
            "it is given before every conversation."
        )
        modes_note.setWordWrap(True)
        self.pages.addWidget(_page(modes_note, self.mode_tabs, fill=self.mode_tabs))

        appearance = QGroupBox("Appearance")
        appearance_form = QFormLayout(appearance)
        self.theme = QComboBox()
        self.theme.setAccessibleName("Theme")
        for theme in THEMES:
            self.theme.addItem({"system": "Follow the system"}.get(theme, theme.capitalize()), theme)
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))
        appearance_form.addRow("Theme", self.theme)
        self.pages.addWidget(_page(appearance))

        self.serve_section = ServeSection(settings)
        self.pages.addWidget(_page(self.serve_section))

        self.page_list.currentRowChanged.connect(self._on_page_chosen)
        self.page_list.setCurrentRow(min(SettingsDialog.last_page, len(PAGES) - 1))

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self._restore_defaults
        )
        outer.addWidget(buttons)
        self._fit_to_screen()

    def show_page(self, name: str) -> None:
        self.page_list.setCurrentRow(PAGES.index(name))

    def page(self, name: str) -> QScrollArea:
        """The page called ``name`` (one of PAGES)."""
        page = self.pages.widget(PAGES.index(name))
        assert isinstance(page, QScrollArea)
        return page

    def _on_page_chosen(self, row: int) -> None:
        if row >= 0:
            self.pages.setCurrentIndex(row)
            SettingsDialog.last_page = row

    def _fit_to_screen(self) -> None:
        """The default size, but never larger than the screen's free area."""
        width, height = DEFAULT_SIZE
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            free = screen.availableGeometry()
            width, height = min(width, free.width() - 40), min(height, free.height() - 40)
        self.resize(max(width, self.minimumWidth()), max(height, self.minimumHeight()))

    def _restore_defaults(self) -> None:
        defaults = Settings()
        self.threads.setValue(defaults.threads)
        self.context_size.setCurrentIndex(max(0, self.context_size.findData(defaults.context_size)))
        if self.gpu_layers is not None:
            self.gpu_layers.setValue(defaults.gpu_layers)
        for editor in self.mode_editors.values():
            editor.restore_preset()
        self.theme.setCurrentIndex(max(0, self.theme.findData(defaults.theme)))
        self.serve_section.restore_defaults()
        self.engine_section.restore_defaults()
        self.saved_states_section.restore_defaults()
        self.templates_section.restore_defaults()

    def result_settings(self) -> Settings:
        """The settings as edited; fields the dialog does not show are carried over unchanged."""
        updated = copy.deepcopy(self._original)
        updated.threads = self.threads.value()
        updated.context_size = int(self.context_size.currentData())
        if self.gpu_layers is not None:
            updated.gpu_layers = self.gpu_layers.value()
        updated.mode_overrides = {
            mode.value: overrides
            for mode, editor in self.mode_editors.items()
            if (overrides := editor.overrides())
        }
        updated.theme = str(self.theme.currentData())
        self.serve_section.apply_to(updated)
        self.engine_section.apply_to(updated)
        self.saved_states_section.apply_to(updated)
        self.templates_section.apply_to(updated)
        return updated
