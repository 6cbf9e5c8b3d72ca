; Meridian Terminal's Windows installer (NSIS 3). Per-user: installs under %LOCALAPPDATA%\Programs without
; administrator rights, adds Start-menu and desktop shortcuts and an entry in Settings > Apps with an
; uninstaller. Built by installer/build.py:
;   makensis -DVERSION=0.1.0 -DBUNDLE_DIR=build\bundle\meridian-terminal -DICON=build\icons\meridian.ico
;            -DOUTFILE=dist\Meridian-Terminal-0.1.0-setup.exe installer\windows\meridian.nsi
; tests/packaging compiles it on Linux against a dummy bundle, so a syntax error fails there first.

Unicode true
!include "MUI2.nsh"

!ifndef VERSION | BUNDLE_DIR | ICON | OUTFILE
  !error "Pass -DVERSION= -DBUNDLE_DIR= -DICON= -DOUTFILE= (installer/build.py does)"
!endif

!define APP_NAME "Meridian Terminal"
!define EXE "meridian.exe"
!define PUBLISHER "Meridian"
; The Settings > Apps entry; HKCU, because a per-user install must not write HKLM.
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\MeridianTerminal"

Name "${APP_NAME}"
OutFile "${OUTFILE}"
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\${APP_NAME}"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
SetCompressor /SOLID lzma
ManifestDPIAware true
BrandingText "${APP_NAME} ${VERSION}"

; "0.1.0" -> "0.1.0.0": VIProductVersion needs four numbers.
!searchparse /noerrors "${VERSION}.0.0.0" "" V1 "." V2 "." V3 "."
VIProductVersion "${V1}.${V2}.${V3}.0"
VIAddVersionKey "ProductName" "${APP_NAME}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "CompanyName" "${PUBLISHER}"
VIAddVersionKey "FileDescription" "${APP_NAME} installer"
VIAddVersionKey "LegalCopyright" "${PUBLISHER}"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\${EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP_NAME}"

!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Section "Install"
  SetShellVarContext current  ; shortcuts in this user's Start menu and desktop
  SetOutPath "$INSTDIR"
  ; An update replaces the whole bundle: files a new version no longer ships must not linger.
  RMDir /r "$INSTDIR\_internal"
  File /r "${BUNDLE_DIR}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateShortcut "$SMPROGRAMS\${APP_NAME}.lnk" "$INSTDIR\${EXE}" "" "$INSTDIR\${EXE}" 0
  CreateShortcut "$DESKTOP\${APP_NAME}.lnk" "$INSTDIR\${EXE}" "" "$INSTDIR\${EXE}" 0

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP_NAME}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${EXE}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  SetShellVarContext current
  Delete "$SMPROGRAMS\${APP_NAME}.lnk"
  Delete "$DESKTOP\${APP_NAME}.lnk"
  ; Remove only what the installer put there, and only if it looks like our folder: the user may have
  ; chosen a folder that holds other files. Settings, data and logs (in %APPDATA% / %LOCALAPPDATA%
  ; \Meridian\meridian-terminal) and keys in Windows Credential Manager are kept on purpose.
  IfFileExists "$INSTDIR\${EXE}" 0 +4
    RMDir /r "$INSTDIR\_internal"
    Delete "$INSTDIR\${EXE}"
    Delete "$INSTDIR\THIRD-PARTY-NOTICES.txt"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd
