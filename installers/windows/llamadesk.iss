; Inno Setup 6 script for LlamaDesk's Windows installer.
;
; installers\build.py compiles it after PyInstaller has built dist\LlamaDesk\, passing every value below with /D
; (name and version from the app package, so nothing here needs editing for a release):
;     ISCC.exe /DAppName=LlamaDesk /DAppVersion=0.1.0 /DAppId=io.github.llamadesk.LlamaDesk ^
;              /DAppHomepage=... /DBundleDir=dist\LlamaDesk /DIconFile=build\llamadesk.ico ^
;              /DOutputDir=dist /DOutputName=LlamaDesk-0.1.0-windows-x86_64-setup installers\windows\llamadesk.iss
;
; It installs for the current user without administrator rights (into %LOCALAPPDATA%\Programs\LlamaDesk), or for
; everyone when started as administrator. Conversations, settings and models live in %LOCALAPPDATA%\LlamaDesk and
; are kept on uninstall.

#ifndef AppName
  #error Run this through installers\build.py, or pass /DAppName=... and the other values listed at the top.
#endif

[Setup]
; The AppId ties upgrades and the uninstaller to one entry in "Installed apps"; it must never change.
AppId={#AppId}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=The {#AppName} developers
AppPublisherURL={#AppHomepage}
AppSupportURL={#AppHomepage}/issues
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename={#OutputName}
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\llamadesk.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole one-folder bundle: llamadesk.exe (the window), llamadesk-cli.exe (the terminal commands), _internal\.
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\llamadesk.exe"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\llamadesk.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\llamadesk.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[InstallDelete]
; An upgrade replaces the bundle whole, so libraries an older version had cannot shadow the new ones.
Type: filesandordirs; Name: "{app}\_internal"
