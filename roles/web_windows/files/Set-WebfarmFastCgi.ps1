#Requires -Version 5.1
<#
.SYNOPSIS
Configure PHP as a FastCGI application of IIS and map *.php of one site to it.

.DESCRIPTION
Run by colo.webfarm.web_windows through ansible.windows.win_powershell.
Reads the server configuration with Microsoft.Web.Administration, compares
every setting, and writes (CommitChanges) only when one differs, so
$Ansible.Changed is true only when something changed. Supports check mode
(-WhatIf): the differences are reported, nothing is written.

- system.webServer/fastCgi (applicationHost.config): one <application> for
  PhpCgiPath with the given limits and PHPRC / PHP_FCGI_MAX_REQUESTS; older
  applications under PhpRoot (previous PHP versions) are removed.
- system.webServer/handlers at <location path="SiteName"> in
  applicationHost.config, not in the site's web.config (the role renders
  that file from a template; writing into it would fight the template).
  Child entries of this collection come before inherited ones, so the PHP
  handler is matched before StaticFile.
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [Parameter(Mandatory = $true)][string]$PhpCgiPath,
    [Parameter(Mandatory = $true)][string]$PhpDir,
    [Parameter(Mandatory = $true)][string]$PhpRoot,
    [Parameter(Mandatory = $true)][string]$SiteName,
    [string]$HandlerName = 'PHP-FastCGI-webfarm',
    [int]$MaxInstances = 0,
    [int]$InstanceMaxRequests = 10000,
    [int]$ActivityTimeout = 60,
    [int]$RequestTimeout = 300
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2.0

$changes = New-Object System.Collections.Generic.List[string]

function ConvertTo-ConfigValue {
    # Enum and flags attributes (resourceType, requireAccess) read back as
    # numbers: turn the wanted names into that number before comparing.
    param($Element, [string]$Name, $Value)
    $schema = $Element.Attributes[$Name].Schema
    if ($null -eq $schema -or $Value -isnot [string] -or @('enum', 'flags') -notcontains $schema.Type) {
        return $Value
    }
    $number = 0
    foreach ($part in $Value.Split(',')) {
        $enum = @($schema.GetEnumValues() | Where-Object { $_.Name -eq $part.Trim() })
        if ($enum.Count -ne 1) { throw "attribute $Name has no value '$part'" }
        $number = $number -bor [int]$enum[0].Value
    }
    return $number
}

function Set-Attribute {
    param($Element, [string]$Name, $Value, [string]$What)
    $Value = ConvertTo-ConfigValue -Element $Element -Name $Name -Value $Value
    $current = $Element.GetAttributeValue($Name)
    if ([string]$current -ne [string]$Value) {
        $Element.SetAttributeValue($Name, $Value)
        $changes.Add("$What $Name '$current' -> '$Value'")
    }
}

function Find-Element {
    param($Collection, [hashtable]$Key)
    foreach ($item in $Collection) {
        $match = $true
        foreach ($k in $Key.Keys) {
            if ([string]$item.GetAttributeValue($k) -ne [string]$Key[$k]) { $match = $false; break }
        }
        if ($match) { return $item }
    }
    return $null
}

if (-not (Test-Path -LiteralPath $PhpCgiPath -PathType Leaf)) {
    throw "PhpCgiPath '$PhpCgiPath' does not exist: unpack PHP first"
}

Add-Type -Path (Join-Path $env:windir 'System32\inetsrv\Microsoft.Web.Administration.dll')
$manager = New-Object Microsoft.Web.Administration.ServerManager
try {
    if (-not $manager.Sites[$SiteName]) {
        throw "IIS site '$SiteName' does not exist: create it first"
    }
    $appHost = $manager.GetApplicationHostConfiguration()

    # ---- FastCGI application -------------------------------------------------
    $apps = $appHost.GetSection('system.webServer/fastCgi').GetCollection()
    $app = Find-Element -Collection $apps -Key @{ fullPath = $PhpCgiPath; arguments = '' }
    if (-not $app) {
        $app = $apps.CreateElement('application')
        $app.SetAttributeValue('fullPath', $PhpCgiPath)
        $app.SetAttributeValue('arguments', '')
        $apps.Add($app) | Out-Null
        $changes.Add("fastCgi application $PhpCgiPath added")
    }
    $what = "fastCgi $PhpCgiPath"
    Set-Attribute $app 'maxInstances' ([uint32]$MaxInstances) $what
    Set-Attribute $app 'instanceMaxRequests' ([uint32]$InstanceMaxRequests) $what
    Set-Attribute $app 'activityTimeout' ([uint32]$ActivityTimeout) $what
    Set-Attribute $app 'requestTimeout' ([uint32]$RequestTimeout) $what

    $envVars = $app.GetCollection('environmentVariables')
    $wanted = [ordered]@{
        PHPRC                 = $PhpDir
        PHP_FCGI_MAX_REQUESTS = [string]$InstanceMaxRequests
    }
    foreach ($name in $wanted.Keys) {
        $var = Find-Element -Collection $envVars -Key @{ name = $name }
        if (-not $var) {
            $var = $envVars.CreateElement('environmentVariable')
            $var.SetAttributeValue('name', $name)
            $var.SetAttributeValue('value', $wanted[$name])
            $envVars.Add($var) | Out-Null
            $changes.Add("$what environment $name = '$($wanted[$name])' added")
        }
        else {
            Set-Attribute $var 'value' $wanted[$name] "$what environment $name"
        }
    }

    # Applications of older PHP versions under PhpRoot are no longer used.
    $rootPrefix = $PhpRoot.TrimEnd('\') + '\'
    $stale = @($apps | Where-Object {
            $path = [string]$_.GetAttributeValue('fullPath')
            $path.StartsWith($rootPrefix, [System.StringComparison]::OrdinalIgnoreCase) -and
            -not $path.Equals($PhpCgiPath, [System.StringComparison]::OrdinalIgnoreCase)
        })
    foreach ($old in $stale) {
        $changes.Add("fastCgi application $($old.GetAttributeValue('fullPath')) removed")
        $apps.Remove($old)
    }

    # ---- handler mapping for the site ------------------------------------------
    $handlers = $appHost.GetSection('system.webServer/handlers', $SiteName).GetCollection()
    $handler = Find-Element -Collection $handlers -Key @{ name = $HandlerName }
    if (-not $handler) {
        $handler = $handlers.CreateElement('add')
        $handler.SetAttributeValue('name', $HandlerName)
        $handlers.AddAt(0, $handler) | Out-Null
        $changes.Add("handler $HandlerName added to site $SiteName")
    }
    $what = "handler $HandlerName"
    Set-Attribute $handler 'path' '*.php' $what
    Set-Attribute $handler 'verb' '*' $what
    Set-Attribute $handler 'modules' 'FastCgiModule' $what
    Set-Attribute $handler 'scriptProcessor' $PhpCgiPath $what
    Set-Attribute $handler 'resourceType' 'Either' $what
    Set-Attribute $handler 'requireAccess' 'Script' $what

    if ($changes.Count -gt 0 -and $PSCmdlet.ShouldProcess("IIS configuration", ($changes -join '; '))) {
        $manager.CommitChanges()
    }
}
finally {
    $manager.Dispose()
}

$Ansible.Changed = $changes.Count -gt 0
$Ansible.Result = @{ changes = @($changes) }
